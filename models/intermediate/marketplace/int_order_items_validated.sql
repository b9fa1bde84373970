{#- An order line is set aside with the first rule it breaks. Increments re-validate the
    lines loaded since the newest here, and those whose order or product was re-validated or
    left since (macros/incremental.sql). -#}

{% call validated_rows(
    'order_items', 'stg_marketplace__order_items', key='order_item_id',
    raw_table='order_items',
    parents=[
        {'on': 'order_id', 'validated': 'int_orders_validated', 'raw_table': 'orders'},
        {'on': 'product_id', 'validated': 'int_products_validated',
         'snapshot': 'products_snapshot'},
    ],
) %}

orders as (
    select * from {{ ref('int_orders_validated') }}
),

products as (
    select * from {{ ref('int_products_validated') }}
),

validated as (
    select
        order_items.*,
        case
            when order_items.quantity is null or order_items.quantity <= 0
                then 'non_positive_quantity'
            when order_items.unit_price is null or order_items.unit_price <= 0
                then 'non_positive_price'
            when orders.order_id is null then 'order_not_found'
            when orders.quarantine_reason is not null then 'order_quarantined'
            when products.product_id is null then 'product_not_found'
            when products.quarantine_reason is not null then 'product_quarantined'
        end as quarantine_reason
    from order_items
    left join orders
        on order_items.order_id = orders.order_id
    left join products
        on order_items.product_id = products.product_id
)

{% endcall %}
