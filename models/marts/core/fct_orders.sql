{#- enable_nestloop = off: the planner cannot see how many orders an increment selects (an
    array built from a CTE counts as 10 rows) and would nest-loop 20k orders through their
    item and payment summaries; hash joins instead (measured 23 s -> 0.9 s for one day). -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='order_id',
        on_schema_change='append_new_columns',
        indexes=[
            {'columns': ['_loaded_at']},
            {'columns': ['_validated_at']},
            {'columns': ['customer_id']},
        ],
        pre_hook=["set local enable_nestloop = off"],
        post_hook=[
            "{{ delete_requarantined_rows(ref('int_orders_validated'), 'order_id') }}",
            "{{ delete_missing_rows(ref('int_orders_cleaned'), 'order_id', 'orders') }}",
        ],
    )
}}

{#- Increments are chosen on _validated_at (macros/incremental.sql), never on ordered_at, so an
    order that arrives days late is still picked up. An order is rebuilt when it, its
    customer, one of its payments, one of its items or one of their products was
    (re)validated since the newest _validated_at here; an item or payment that left the clean
    set (quarantined after a product purge) was re-validated too, so its order's counts and
    sums are rebuilt. -#}

-- the increment reads the validated tables behind the clean views
-- depends_on: {{ ref('int_orders_validated') }}
-- depends_on: {{ ref('int_customers_validated') }}
-- depends_on: {{ ref('int_payments_validated') }}
-- depends_on: {{ ref('int_order_items_validated') }}
-- depends_on: {{ ref('int_products_validated') }}
-- and, after its insert, the loader's tombstones (delete_missing_rows)
-- depends_on: {{ source('ops', 'raw_deletes') }}

{%- set previous = previous_build() if is_incremental() else none %}
{#- one compile-time query for the cutoff, however often it is used below #}
{%- set cutoff = incremental_cutoff('_validated_at') if previous is not none %}

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

{% if previous is not none -%}
    changed_orders as (
        select changed.order_id
        from {{ ref('int_orders_validated') }} as changed
        where changed._validated_at > {{ cutoff }}
        union
        select built.order_id
        from {{ previous }} as built
        inner join {{ ref('int_customers_validated') }} as changed_customers
            on built.customer_id = changed_customers.customer_id
        where changed_customers._validated_at > {{ cutoff }}
        union
        select changed_payments.order_id
        from {{ ref('int_payments_validated') }} as changed_payments
        where changed_payments._validated_at > {{ cutoff }}
        union
        select changed_items.order_id
        from {{ ref('int_order_items_validated') }} as changed_items
        where changed_items._validated_at > {{ cutoff }}
        union
        select items.order_id
        from {{ ref('int_order_items_validated') }} as items
        inner join {{ ref('int_products_validated') }} as changed_products
            on items.product_id = changed_products.product_id
        where changed_products._validated_at > {{ cutoff }}
    ),
{% endif %}

-- `order_id = any(array(...))`, not a join or `in (...)`: a condition PostgreSQL pushes into
-- the clean views and answers by index (a first build takes every order)
selected_orders as (
    select orders.*
    from orders
    {% if previous is not none -%}
        where orders.order_id = any(array(select changed_orders.order_id from changed_orders))
    {%- endif %}
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
    {% if previous is not none -%}
        where
            order_items.order_id
            = any(array(select selected_orders.order_id from selected_orders))
    {%- endif %}
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
    {% if previous is not none -%}
        where
            payments.order_id
            = any(array(select selected_orders.order_id from selected_orders))
    {%- endif %}
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
        ) as _loaded_at,
        {{ validation_time() }} as _validated_at
    from selected_orders
    inner join customers
        on selected_orders.customer_id = customers.customer_id
    left join payment_summary
        on selected_orders.order_id = payment_summary.order_id
    left join item_summary
        on selected_orders.order_id = item_summary.order_id
)

select * from final
