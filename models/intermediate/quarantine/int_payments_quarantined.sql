-- payments set aside by a hard rule, with the rule that caught them (quarantine_reason).
with

validated as (
    select * from {{ ref('int_payments_validated') }}
),

quarantined as (
    select *
    from validated
    where quarantine_reason is not null
)

select * from quarantined
