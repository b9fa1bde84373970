with

customers as (
    select * from {{ ref('int_customers_cleaned') }}
),

orders as (
    select * from {{ ref('int_orders_cleaned') }}
),

order_summary as (
    select
        customer_id,
        min(ordered_date) as first_order_date,
        max(ordered_date) as last_order_date,
        count(*) as order_count,
        sum(total_amount) filter (
            where order_status not in ('cancelled', 'returned')
        ) as lifetime_value
    from orders
    group by customer_id
),

final as (
    select
        customers.customer_id,
        customers.email,
        customers.first_name,
        customers.last_name,
        concat_ws(' ', customers.first_name, customers.last_name) as full_name,
        customers.phone,
        customers.street,
        customers.city,
        customers.state_code,
        customers.is_state_unknown,
        customers.zip_code,
        customers.birth_date,
        {{ age_in_years('customers.birth_date', as_of_date()) }} as customer_age,
        customers.registered_at,
        ({{ as_of_date() }} - {{ utc_date('customers.registered_at') }})
            as days_since_registration,
        order_summary.first_order_date,
        order_summary.last_order_date,
        coalesce(order_summary.order_count, 0) as order_count,
        coalesce(order_summary.lifetime_value, 0)::numeric(14, 2) as lifetime_value,
        customers.updated_at,
        customers._loaded_at
    from customers
    left join order_summary
        on customers.customer_id = order_summary.customer_id
)

select * from final
