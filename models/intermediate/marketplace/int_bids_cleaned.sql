-- The bids that pass every hard rule: what the marts are built from.
with

validated as (
    select * from {{ ref('int_bids_validated') }}
),

cleaned as (
    select *
    from validated
    where quarantine_reason is null
)

select * from cleaned
