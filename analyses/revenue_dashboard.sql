-- The sample revenue dashboard: last 90 days of revenue with a 7-day average and the share of
-- revenue by product category.
with

daily as (
    select * from {{ ref('daily_revenue') }}
),

items as (
    select * from {{ ref('fct_order_items') }}
),

window_start as (
    select max(revenue_date) - 90 as first_day from daily
),

revenue_trend as (
    select
        daily.revenue_date,
        daily.revenue,
        daily.order_count,
        avg(daily.revenue) over (
            order by daily.revenue_date rows between 6 preceding and current row
        ) as revenue_7d_average
    from daily
    cross join window_start
    where daily.revenue_date >= window_start.first_day
),

category_share as (
    select
        items.category,
        sum(items.line_amount) as category_amount
    from items
    cross join window_start
    where items.ordered_date >= window_start.first_day
    group by items.category
)

select
    revenue_trend.revenue_date,
    revenue_trend.revenue,
    revenue_trend.order_count,
    revenue_trend.revenue_7d_average,
    category_share.category,
    category_share.category_amount
from revenue_trend
cross join category_share
order by revenue_trend.revenue_date, category_share.category
