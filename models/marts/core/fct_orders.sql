{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='order_id',
        on_schema_change='append_new_columns',
        indexes=[{'columns': ['order_id'], 'unique': true}, {'columns': ['_loaded_at']}],
        post_hook=["{{ delete_missing_rows(ref('int_orders_cleaned'), 'order_id') }}"],
    )
}}

{#- Increments are chosen on the loader's _loaded_at, never on ordered_at, so an order that
    arrives days late is still picked up. An order is rebuilt when it, its customer, its
    payment, one of its items or one of their products was (re)loaded since the newest row
    here minus the lookback, when it is not here yet, or when a line left the clean set
    without a new load (quarantined after a product purge). -#}

with

orders as (
    select * from {{ ref('int_orders_cleaned') }}
),

customers as (
    select * from {{ ref('int_customers_cleaned') }}
),

payments as (
    select * from {{ ref('int_payments_cleaned') }}
),

order_items as (
    select * from {{ ref('int_order_items_cleaned') }}
),

products as (
    select * from {{ ref('int_products_cleaned') }}
),

quarantined_items as (
    select * from {{ ref('int_order_items_quarantined') }}
),

-- orders with a line in quarantine, and how many clean lines each has left
orders_with_quarantined_items as (
    select distinct quarantined_items.order_id
    from quarantined_items
),

clean_item_counts as (
    select
        orders_with_quarantined_items.order_id,
        count(order_items.order_item_id) as clean_items
    from orders_with_quarantined_items
    left join order_items
        on orders_with_quarantined_items.order_id = order_items.order_id
    group by orders_with_quarantined_items.order_id
),

-- those whose built item_count is stale: a line can leave the clean set without any new
-- load (its product was purged)
stale_item_counts as (
    select clean_item_counts.order_id
    from clean_item_counts
    {% if is_incremental() %}
        inner join {{ this }} as already_built
            on clean_item_counts.order_id = already_built.order_id
        where already_built.item_count <> clean_item_counts.clean_items
    {% else %}
        where false
    {% endif %}
),

changed_orders as (
    {% if is_incremental() %}
        select orders.order_id
        from orders
        where orders._loaded_at > {{ incremental_cutoff() }}
        union
        select orders.order_id
        from orders
        inner join customers
            on orders.customer_id = customers.customer_id
        where customers._loaded_at > {{ incremental_cutoff() }}
        union
        select payments.order_id
        from payments
        where payments._loaded_at > {{ incremental_cutoff() }}
        union
        select order_items.order_id
        from order_items
        where order_items._loaded_at > {{ incremental_cutoff() }}
        union
        select order_items.order_id
        from order_items
        inner join products
            on order_items.product_id = products.product_id
        where products._loaded_at > {{ incremental_cutoff() }}
        union
        select stale_item_counts.order_id
        from stale_item_counts
        union
        select orders.order_id
        from orders
        left join {{ this }} as already_built
            on orders.order_id = already_built.order_id
        where already_built.order_id is null
    {% else %}
        select orders.order_id
        from orders
    {% endif %}
),

selected_orders as (
    select orders.*
    from orders
    inner join changed_orders
        on orders.order_id = changed_orders.order_id
),

item_summary as (
    select
        order_items.order_id,
        count(*) as item_count,
        sum(order_items.quantity) as total_quantity,
        sum(order_items.line_amount) as items_amount,
        count(distinct order_items.product_id) as product_count,
        string_agg(distinct products.category, ',' order by products.category) as categories,
        max(greatest(order_items._loaded_at, products._loaded_at)) as items_loaded_at
    from order_items
    inner join products
        on order_items.product_id = products.product_id
    where order_items.order_id in (select selected_orders.order_id from selected_orders)
    group by order_items.order_id
),

-- one row per order: the latest payment's method and status, the sum of all payment amounts
payment_summary as (
    select distinct on (payments.order_id)
        payments.order_id,
        payments.payment_id,
        payments.payment_method,
        payments.payment_status,
        payments.paid_at,
        sum(payments.amount) over (partition by payments.order_id) as payment_amount,
        max(payments._loaded_at) over (partition by payments.order_id) as payments_loaded_at
    from payments
    where payments.order_id in (select selected_orders.order_id from selected_orders)
    order by payments.order_id asc, payments.created_at desc, payments.payment_id desc
),

final as (
    select
        -- ids
        selected_orders.order_id,
        selected_orders.customer_id,
        payment_summary.payment_id,

        -- order
        selected_orders.order_status,
        selected_orders.ordered_at,
        selected_orders.ordered_date,
        selected_orders.shipping_state_code,
        selected_orders.total_amount,

        -- customer attributes at build time
        customers.email as customer_email,
        concat_ws(' ', customers.first_name, customers.last_name) as customer_full_name,
        customers.city as customer_city,
        customers.state_code as customer_state_code,

        -- product attributes, aggregated over the order's items
        coalesce(item_summary.item_count, 0) as item_count,
        coalesce(item_summary.total_quantity, 0) as total_quantity,
        coalesce(item_summary.product_count, 0) as product_count,
        item_summary.categories as product_categories,
        coalesce(item_summary.items_amount, 0)::numeric(14, 2) as items_amount,

        -- payment
        payment_summary.payment_method,
        coalesce(payment_summary.payment_status, 'unpaid') as payment_status,
        payment_summary.paid_at,
        coalesce(payment_summary.payment_amount, 0)::numeric(14, 2) as payment_amount,
        coalesce(
            payment_summary.payment_amount = selected_orders.total_amount, false
        ) as is_payment_matching,
        selected_orders.order_status not in ('cancelled', 'returned') as is_revenue,

        -- newest load among the order and everything denormalised into it
        greatest(
            selected_orders._loaded_at,
            customers._loaded_at,
            payment_summary.payments_loaded_at,
            item_summary.items_loaded_at
        ) as _loaded_at
    from selected_orders
    inner join customers
        on selected_orders.customer_id = customers.customer_id
    left join payment_summary
        on selected_orders.order_id = payment_summary.order_id
    left join item_summary
        on selected_orders.order_id = item_summary.order_id
)

select * from final
