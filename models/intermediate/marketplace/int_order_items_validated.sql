{{ config(materialized='table', indexes=[{'columns': ['order_item_id'], 'unique': true}]) }}

with

order_items as (
    select * from {{ ref('stg_marketplace__order_items') }}
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
)

select * from validated
