{{ config(materialized='table', indexes=[{'columns': ['customer_id'], 'unique': true}]) }}

with

customers as (
    select * from {{ ref('stg_marketplace__customers') }}
),

ranked as (
    select
        customers.*,
        {{ is_valid_email('customers.email') }} as is_email_valid,
        row_number() over (
            partition by customers.email
            order by customers.registered_at asc, customers.customer_id asc
        ) as email_rank
    from customers
),

validated as (
    select
        ranked.*,
        case
            when not ranked.is_email_valid then 'invalid_email'
            when ranked.email_rank > 1 then 'duplicate_email'
        end as quarantine_reason
    from ranked
)

select * from validated
