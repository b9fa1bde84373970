{{ config(materialized='table', indexes=[{'columns': ['order_id'], 'unique': true}]) }}

with

orders as (
    select * from {{ ref('stg_marketplace__orders') }}
),

customers as (
    select * from {{ ref('int_customers_validated') }}
),

validated as (
    select
        orders.*,
        case
            when orders.total_amount < 0 then 'negative_total_amount'
            when customers.customer_id is null then 'customer_not_found'
            when customers.quarantine_reason is not null then 'customer_quarantined'
        end as quarantine_reason
    from orders
    left join customers
        on orders.customer_id = customers.customer_id
)

select * from validated
