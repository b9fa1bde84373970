{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='payment_id',
        on_schema_change='append_new_columns',
        indexes=[
            {'columns': ['_loaded_at']},
            {'columns': ['_validated_at']},
            {'columns': ['order_id']},
        ],
        post_hook=[
            "{{ delete_requarantined_rows(ref('int_payments_validated'), 'payment_id') }}",
            "{{ delete_missing_rows(ref('int_payments_cleaned'), 'payment_id', 'payments') }}",
        ],
    )
}}

{#- Increments rebuild the payments whose validated row or order was (re)validated since the
    newest _validated_at here (macros/incremental.sql). -#}

-- the increment reads the validated tables behind the clean views
-- depends_on: {{ ref('int_payments_validated') }}
-- depends_on: {{ ref('int_orders_validated') }}
-- and, after its insert, the loader's tombstones (delete_missing_rows)
-- depends_on: {{ source('ops', 'raw_deletes') }}

{%- set previous = previous_build() if is_incremental() else none %}
{#- one compile-time query for the cutoff, however often it is used below #}
{%- set cutoff = incremental_cutoff('_validated_at') if previous is not none %}
{#- `key = any(array(...))`, not `key in (...)`: a condition PostgreSQL pushes into the view
    below and answers by index, where a semi-join would scan it whole. #}

with

payments as (
    select * from {{ ref('int_payments_cleaned') }}
    {% if previous is not none -%}
        where
            payment_id = any(
                array(
                    select changed.payment_id
                    from {{ ref('int_payments_validated') }} as changed
                    where changed._validated_at > {{ cutoff }}
                    union
                    select built.payment_id
                    from {{ previous }} as built
                    inner join {{ ref('int_orders_validated') }} as changed_orders
                        on built.order_id = changed_orders.order_id
                    where changed_orders._validated_at > {{ cutoff }}
                )
            )
    {%- endif %}
),

orders as (
    select * from {{ ref('int_orders_cleaned') }}
),

joined as (
    select
        -- ids
        payments.payment_id,
        payments.order_id,
        orders.customer_id,

        -- strings
        payments.payment_method,
        payments.payment_status,

        -- numerics
        payments.amount,
        orders.total_amount as order_total_amount,
        payments.amount = orders.total_amount as is_matching_order_total,

        -- timestamps
        orders.ordered_at,
        payments.paid_at,
        {{ utc_date('payments.paid_at') }} as paid_date,
        payments.paid_at < orders.ordered_at as is_paid_before_ordered,

        greatest(payments._loaded_at, orders._loaded_at) as _loaded_at,
        {{ validation_time() }} as _validated_at
    from payments
    inner join orders
        on payments.order_id = orders.order_id
),

final as (
    select * from joined
)

select * from final
