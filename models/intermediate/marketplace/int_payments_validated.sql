{{ config(materialized='table', indexes=[{'columns': ['payment_id'], 'unique': true}]) }}

with

payments as (
    select * from {{ ref('stg_marketplace__payments') }}
),

orders as (
    select * from {{ ref('int_orders_validated') }}
),

validated as (
    select
        payments.*,
        case
            when payments.amount is null or payments.amount <= 0 then 'non_positive_amount'
            when orders.order_id is null then 'order_not_found'
            when orders.quarantine_reason is not null then 'order_quarantined'
        end as quarantine_reason
    from payments
    left join orders
        on payments.order_id = orders.order_id
)

select * from validated
