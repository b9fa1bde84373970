{#- An order is set aside with the first rule it breaks. Increments re-validate the orders
    loaded since the newest here, those whose customer was re-validated or deleted since,
    and those dated in the future (macros/incremental.sql, macros/validation.sql). -#}

{% call validated_rows(
    'orders', 'stg_marketplace__orders', key='order_id', raw_table='orders',
    parents=[
        {'on': 'customer_id', 'validated': 'int_customers_validated',
         'snapshot': 'customers_snapshot'},
    ],
    future_dated=true,
) %}

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
)

{% endcall %}
