{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        tags=['incremental'],
        unique_key='payment_id',
        on_schema_change='append_new_columns',
        indexes=[
            {'columns': ['payment_id'], 'unique': true},
            {'columns': ['_loaded_at']},
            {'columns': ['_validated_at']},
            {'columns': ['order_id']},
        ],
        post_hook=[
            "{{ delete_missing_rows(ref('stg_marketplace__payments'), 'payment_id', 'payments') }}",
            "{{ index_quarantined_rows() }}",
        ],
    )
}}

{#- Increments re-validate the payments loaded since the newest here, and those whose order
    was re-validated since (macros/incremental.sql), and those set aside as dated in the
    future (macros/validation.sql). -#}

{%- set previous = previous_build() if is_incremental() else none %}
{#- one compile-time query for the cutoff, however often it is used below #}
{%- set cutoff = incremental_cutoff('_validated_at') if previous is not none %}
{#- `key = any(array(...))`, not `key in (...)`: a condition PostgreSQL pushes into the view
    below and answers by index, where a semi-join would scan it whole. #}

with

payments as (
    select * from {{ ref('stg_marketplace__payments') }}
    {% if previous is not none -%}
        where
            payment_id = any(
                array(
                    select changed.payment_id
                    from {{ ref('stg_marketplace__payments') }} as changed
                    where changed._loaded_at > {{ incremental_cutoff() }}
                    union
                    select built.payment_id
                    from {{ previous }} as built
                    inner join {{ ref('int_orders_validated') }} as orders
                        on built.order_id = orders.order_id
                    where orders._validated_at > {{ cutoff }}
                    union
                    -- an order that left raw (a repair by `elt reconcile --deep`) is gone
                    -- from its validated table: its tombstone re-validates its payments
                    select built.payment_id
                    from {{ previous }} as built
                    where built.order_id = any(array({{ tombstoned_keys('orders', cutoff) }}))
                    union
                    -- a row dated in the future is checked again until its time comes
                    select built.payment_id
                    from {{ previous }} as built
                    where built.quarantine_reason = 'date_in_future'
                )
            )
    {%- endif %}
),

orders as (
    select * from {{ ref('int_orders_validated') }}
),

validated as (
    select
        payments.*,
        case
            when payments.amount is null or payments.amount <= 0 then 'non_positive_amount'
            when {{ is_dated_in_future('payments.paid_at') }} then 'date_in_future'
            when orders.order_id is null then 'order_not_found'
            when orders.quarantine_reason is not null then 'order_quarantined'
        end as quarantine_reason
    from payments
    left join orders
        on payments.order_id = orders.order_id
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
        on validated.payment_id = previous.payment_id
)

select * from final
