{{
    config(
        materialized='table',
        indexes=[
            {'columns': ['customer_id'], 'unique': true},
            {'columns': ['_validated_at']},
        ],
    )
}}

{#- Rebuilt in full (a duplicate email's verdict depends on every customer sharing it), but
    a row keeps its _validated_at while its load and verdict stand, so children re-validate
    only what changed (macros/incremental.sql). -#}

{%- set previous = previous_build() %}

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
        on validated.customer_id = previous.customer_id
)

select * from final
