{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='payment_id',
        on_schema_change='append_new_columns',
        indexes=[{'columns': ['payment_id'], 'unique': true}, {'columns': ['_loaded_at']}],
        post_hook=["{{ delete_missing_rows(ref('int_payments_cleaned'), 'payment_id') }}"],
    )
}}

{#- Increments on the loader's _loaded_at of the payment or its order (minus the lookback),
    plus clean payments not here yet. -#}

with

payments as (
    select * from {{ ref('int_payments_cleaned') }}
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

        greatest(payments._loaded_at, orders._loaded_at) as _loaded_at
    from payments
    inner join orders
        on payments.order_id = orders.order_id
),

final as (
    select joined.*
    from joined
    {% if is_incremental() %}
        left join {{ this }} as already_built
            on joined.payment_id = already_built.payment_id
        where
            joined._loaded_at > {{ incremental_cutoff() }}
            or already_built.payment_id is null
    {% endif %}
)

select * from final
