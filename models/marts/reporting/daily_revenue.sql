{#- A table, rebuilt on every run from fct_orders: an order that arrives days late lands on
    its ordered_date, and every day it touches is recomputed (aggregating the facts costs
    seconds even at a million orders, and a rebuild cannot drift from the facts). -#}

with

orders as (
    select * from {{ ref('fct_orders') }}
),

daily as (
    select
        ordered_date as revenue_date,
        count(*) as order_count,
        count(*) filter (where is_revenue) as revenue_order_count,
        count(*) filter (where order_status = 'cancelled') as cancelled_order_count,
        count(distinct customer_id) as customer_count,
        coalesce(sum(total_amount) filter (where is_revenue), 0) as revenue,
        coalesce(sum(total_amount) filter (where order_status = 'returned'), 0)
            as returned_amount
    from orders
    group by ordered_date
),

final as (
    select
        revenue_date,
        order_count,
        revenue_order_count,
        cancelled_order_count,
        customer_count,
        revenue::numeric(16, 2) as revenue,
        returned_amount::numeric(16, 2) as returned_amount,
        round(revenue / nullif(revenue_order_count, 0), 2)::numeric(14, 2)
            as average_order_value
    from daily
)

select * from final
