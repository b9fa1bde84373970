{#- A table, rebuilt on every run (see daily_revenue): late orders and bids count in the
    month they happened. A customer is active in a month when they ordered or bid in it. -#}

with

orders as (
    select * from {{ ref('fct_orders') }}
),

bids as (
    select * from {{ ref('fct_bids') }}
),

customers as (
    select * from {{ ref('dim_customers') }}
),

activity as (
    select
        customer_id,
        date_trunc('month', ordered_date)::date as activity_month,
        'order' as activity_type
    from orders
    union all
    select
        bidder_id as customer_id,
        date_trunc('month', placed_date)::date as activity_month,
        'bid' as activity_type
    from bids
),

monthly as (
    select
        activity.activity_month,
        count(distinct activity.customer_id) as active_users,
        count(distinct activity.customer_id) filter (
            where activity.activity_type = 'order'
        ) as ordering_users,
        count(distinct activity.customer_id) filter (
            where activity.activity_type = 'bid'
        ) as bidding_users,
        count(distinct activity.customer_id) filter (
            where date_trunc('month', customers.registered_at at time zone 'UTC')::date
            = activity.activity_month
        ) as new_active_users
    from activity
    left join customers
        on activity.customer_id = customers.customer_id
    group by activity.activity_month
)

select * from monthly
