{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='order_item_id',
        on_schema_change='append_new_columns',
        indexes=[
            {'columns': ['_loaded_at']},
            {'columns': ['_validated_at']},
            {'columns': ['order_id']},
            {'columns': ['product_id']},
        ],
        post_hook=[
            "{{ delete_requarantined_rows(ref('int_order_items_validated'), 'order_item_id') }}",
            "{{ delete_missing_rows(ref('int_order_items_cleaned'), 'order_item_id', 'order_items') }}",
        ],
    )
}}

{#- Increments rebuild the items whose validated row, order or product was (re)validated
    since the newest _validated_at here (macros/incremental.sql). -#}

-- the increment reads the validated tables behind the clean views
-- depends_on: {{ ref('int_order_items_validated') }}
-- depends_on: {{ ref('int_orders_validated') }}
-- depends_on: {{ ref('int_products_validated') }}
-- and, after its insert, the loader's tombstones (delete_missing_rows)
-- depends_on: {{ source('ops', 'raw_deletes') }}

{%- set previous = previous_build() if is_incremental() else none %}
{#- one compile-time query for the cutoff, however often it is used below #}
{%- set cutoff = incremental_cutoff('_validated_at') if previous is not none %}
{#- `key = any(array(...))`, not `key in (...)`: a condition PostgreSQL pushes into the view
    below and answers by index, where a semi-join would scan it whole. #}

with

order_items as (
    select * from {{ ref('int_order_items_cleaned') }}
    {% if previous is not none -%}
        where
            order_item_id = any(
                array(
                    select changed.order_item_id
                    from {{ ref('int_order_items_validated') }} as changed
                    where changed._validated_at > {{ cutoff }}
                    union
                    select built.order_item_id
                    from {{ previous }} as built
                    inner join {{ ref('int_orders_validated') }} as changed_orders
                        on built.order_id = changed_orders.order_id
                    where changed_orders._validated_at > {{ cutoff }}
                    union
                    select built.order_item_id
                    from {{ previous }} as built
                    inner join {{ ref('int_products_validated') }} as changed_products
                        on built.product_id = changed_products.product_id
                    where changed_products._validated_at > {{ cutoff }}
                )
            )
    {%- endif %}
),

orders as (
    select * from {{ ref('int_orders_cleaned') }}
),

products as (
    select * from {{ ref('int_products_cleaned') }}
),

joined as (
    select
        -- ids
        order_items.order_item_id,
        order_items.order_id,
        order_items.product_id,
        orders.customer_id,
        products.seller_id,

        -- order attributes
        orders.order_status,
        orders.ordered_at,
        orders.ordered_date,

        -- product attributes
        products.product_name,
        products.category,

        -- numerics
        order_items.quantity,
        order_items.unit_price,
        order_items.line_amount,

        greatest(
            order_items._loaded_at, orders._loaded_at, products._loaded_at
        ) as _loaded_at,
        {{ validation_time() }} as _validated_at
    from order_items
    inner join orders
        on order_items.order_id = orders.order_id
    inner join products
        on order_items.product_id = products.product_id
),

final as (
    select * from joined
)

select * from final
