{#- A payment is set aside with the first rule it breaks. Increments re-validate the payments
    loaded since the newest here, those whose order was re-validated or left raw since, and
    those dated in the future (macros/incremental.sql, macros/validation.sql). -#}

{% call validated_rows(
    'payments', 'stg_marketplace__payments', key='payment_id', raw_table='payments',
    parents=[
        {'on': 'order_id', 'validated': 'int_orders_validated', 'raw_table': 'orders'},
    ],
    future_dated=true,
) %}

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
)

{% endcall %}
