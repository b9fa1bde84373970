{{ config(materialized='table', indexes=[{'columns': ['product_id'], 'unique': true}]) }}

with

products as (
    select * from {{ ref('stg_marketplace__products') }}
),

sellers as (
    select * from {{ ref('int_customers_validated') }}
),

validated as (
    select
        products.*,
        case
            when products.price is null or products.price <= 0 then 'non_positive_price'
            when sellers.customer_id is null then 'seller_not_found'
            when sellers.quarantine_reason is not null then 'seller_quarantined'
        end as quarantine_reason
    from products
    left join sellers
        on products.seller_id = sellers.customer_id
)

select * from validated
