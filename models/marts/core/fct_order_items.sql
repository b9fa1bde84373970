{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='order_item_id',
        on_schema_change='append_new_columns',
        indexes=[{'columns': ['order_item_id'], 'unique': true}, {'columns': ['_loaded_at']}],
        post_hook=["{{ delete_missing_rows(ref('int_order_items_cleaned'), 'order_item_id') }}"],
    )
}}

{#- Increments on the loader's _loaded_at of the item, its order or its product (minus the
    lookback), plus clean items not here yet. -#}

with

order_items as (
    select * from {{ ref('int_order_items_cleaned') }}
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
        ) as _loaded_at
    from order_items
    inner join orders
        on order_items.order_id = orders.order_id
    inner join products
        on order_items.product_id = products.product_id
),

final as (
    select joined.*
    from joined
    {% if is_incremental() %}
        left join {{ this }} as already_built
            on joined.order_item_id = already_built.order_item_id
        where
            joined._loaded_at > {{ incremental_cutoff() }}
            or already_built.order_item_id is null
    {% endif %}
)

select * from final
