{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        tags=['incremental'],
        unique_key='order_item_id',
        on_schema_change='append_new_columns',
        indexes=[
            {'columns': ['order_item_id'], 'unique': true},
            {'columns': ['_loaded_at']},
            {'columns': ['_validated_at']},
            {'columns': ['order_id']},
            {'columns': ['product_id']},
        ],
        post_hook=[
            "{{ delete_missing_rows(ref('stg_marketplace__order_items'), 'order_item_id', 'order_items') }}",
            "{{ index_quarantined_rows() }}",
        ],
    )
}}

{#- Increments re-validate the items loaded since the newest here, and those whose order or
    product was re-validated since (macros/incremental.sql). -#}

-- depends_on: {{ ref('products_snapshot') }}

{%- set previous = previous_build() if is_incremental() else none %}
{#- one compile-time query for the cutoff, however often it is used below #}
{%- set cutoff = incremental_cutoff('_validated_at') if previous is not none %}
{#- `key = any(array(...))`, not `key in (...)`: a condition PostgreSQL pushes into the view
    below and answers by index, where a semi-join would scan it whole. #}

with

order_items as (
    select * from {{ ref('stg_marketplace__order_items') }}
    {% if previous is not none -%}
        where
            order_item_id = any(
                array(
                    select changed.order_item_id
                    from {{ ref('stg_marketplace__order_items') }} as changed
                    where changed._loaded_at > {{ incremental_cutoff() }}
                    union
                    select built.order_item_id
                    from {{ previous }} as built
                    inner join {{ ref('int_orders_validated') }} as orders
                        on built.order_id = orders.order_id
                    where orders._validated_at > {{ cutoff }}
                    union
                    -- an order that left raw (a repair by `elt reconcile --deep`) is gone
                    -- from its validated table: its tombstone re-validates its lines
                    select built.order_item_id
                    from {{ previous }} as built
                    where built.order_id = any(array({{ tombstoned_keys('orders', cutoff) }}))
                    union
                    select built.order_item_id
                    from {{ previous }} as built
                    inner join {{ ref('int_products_validated') }} as products
                        on built.product_id = products.product_id
                    where products._validated_at > {{ cutoff }}
                    union
                    select built.order_item_id
                    from {{ previous }} as built
                    where
                        built.product_id in (
                            {{ closed_since('products_snapshot', 'product_id', cutoff) }}
                        )
                )
            )
    {%- endif %}
),

orders as (
    select * from {{ ref('int_orders_validated') }}
),

products as (
    select * from {{ ref('int_products_validated') }}
),

validated as (
    select
        order_items.*,
        case
            when order_items.quantity is null or order_items.quantity <= 0
                then 'non_positive_quantity'
            when order_items.unit_price is null or order_items.unit_price <= 0
                then 'non_positive_price'
            when orders.order_id is null then 'order_not_found'
            when orders.quarantine_reason is not null then 'order_quarantined'
            when products.product_id is null then 'product_not_found'
            when products.quarantine_reason is not null then 'product_quarantined'
        end as quarantine_reason
    from order_items
    left join orders
        on order_items.order_id = orders.order_id
    left join products
        on order_items.product_id = products.product_id
),

final as (
    select
        validated.*,
        -- kept while the row's load and verdict stand (macros/incremental.sql)
        case
            when
                previous._loaded_at = validated._loaded_at
                and not (previous.quarantine_reason is distinct from validated.quarantine_reason)
                then previous._validated_at
            else {{ validation_time() }}
        end as _validated_at
    from validated
    left join {{ previous_or_empty(previous, 'validated') }} as previous
        on validated.order_item_id = previous.order_item_id
)

select * from final
