-- The order_items that pass every hard rule: what the marts are built from.
with

validated as (
    select * from {{ ref('int_order_items_validated') }}
),

cleaned as (
    select *
    from validated
    where quarantine_reason is null
)

select * from cleaned
