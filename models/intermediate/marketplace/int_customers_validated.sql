{#- Rebuilt in full (a duplicate email's verdict depends on every customer sharing it), but
    a row keeps its _validated_at while its load and verdict stand, so children re-validate
    only what changed (macros/incremental.sql). -#}

{% call validated_rows(
    'customers', 'stg_marketplace__customers', key='customer_id', materialized='table'
) %}

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

{% endcall %}
