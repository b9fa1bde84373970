{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        tags=['incremental'],
        unique_key='order_id',
        on_schema_change='append_new_columns',
        indexes=[
            {'columns': ['order_id'], 'unique': true},
            {'columns': ['_loaded_at']},
            {'columns': ['_validated_at']},
            {'columns': ['customer_id']},
        ],
        post_hook=[
            "{{ delete_missing_rows(ref('stg_marketplace__orders'), 'order_id', 'orders') }}",
            "{{ index_quarantined_rows() }}",
        ],
    )
}}

{#- Increments re-validate the orders loaded since the newest here, and those whose customer
    was re-validated since (macros/incremental.sql), and those set aside as dated in the
    future (macros/validation.sql). -#}

-- depends_on: {{ ref('customers_snapshot') }}

{%- set previous = previous_build() if is_incremental() else none %}
{#- one compile-time query for the cutoff, however often it is used below #}
{%- set cutoff = incremental_cutoff('_validated_at') if previous is not none %}
{#- `key = any(array(...))`, not `key in (...)`: a condition PostgreSQL pushes into the view
    below and answers by index, where a semi-join would scan it whole. #}

with

orders as (
    select * from {{ ref('stg_marketplace__orders') }}
    {% if previous is not none -%}
        where
            order_id = any(
                array(
                    select changed.order_id
                    from {{ ref('stg_marketplace__orders') }} as changed
                    where changed._loaded_at > {{ incremental_cutoff() }}
                    union
                    select built.order_id
                    from {{ previous }} as built
                    inner join {{ ref('int_customers_validated') }} as customers
                        on built.customer_id = customers.customer_id
                    where customers._validated_at > {{ cutoff }}
                    union
                    select built.order_id
                    from {{ previous }} as built
                    where
                        built.customer_id in (
                            {{ closed_since('customers_snapshot', 'customer_id', cutoff) }}
                        )
                    union
                    -- a row dated in the future is checked again until its time comes
                    select built.order_id
                    from {{ previous }} as built
                    where built.quarantine_reason = 'date_in_future'
                )
            )
    {%- endif %}
),

customers as (
    select * from {{ ref('int_customers_validated') }}
),

validated as (
    select
        orders.*,
        case
            when orders.total_amount < 0 then 'negative_total_amount'
            when {{ is_dated_in_future('orders.ordered_at') }} then 'date_in_future'
            when customers.customer_id is null then 'customer_not_found'
            when customers.quarantine_reason is not null then 'customer_quarantined'
        end as quarantine_reason
    from orders
    left join customers
        on orders.customer_id = customers.customer_id
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
        on validated.order_id = previous.order_id
)

select * from final
