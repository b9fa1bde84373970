-- daily_revenue must add up to the revenue of fct_orders, day by day: late orders included.
{{ config(severity='error', store_failures=true) }}

with

facts as (
    select
        ordered_date as revenue_date,
        sum(total_amount) filter (where is_revenue) as fact_revenue,
        count(*) as fact_orders
    from {{ ref('fct_orders') }}
    group by ordered_date
)

select
    facts.revenue_date,
    facts.fact_revenue,
    daily.revenue,
    facts.fact_orders,
    daily.order_count
from facts
full outer join {{ ref('daily_revenue') }} as daily
    on facts.revenue_date = daily.revenue_date
where
    coalesce(facts.fact_revenue, 0) <> coalesce(daily.revenue, 0)
    or coalesce(facts.fact_orders, 0) <> coalesce(daily.order_count, 0)
