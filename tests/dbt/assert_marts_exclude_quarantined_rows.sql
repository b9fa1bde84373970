-- No quarantined row may reach a mart.
{{ config(severity='error', store_failures=true) }}

select
    'fct_orders' as mart,
    fct.order_id as row_key
from {{ ref('fct_orders') }} as fct
inner join {{ ref('int_orders_quarantined') }} as quarantined
    on fct.order_id = quarantined.order_id
union all
select
    'fct_order_items' as mart,
    fct.order_item_id as row_key
from {{ ref('fct_order_items') }} as fct
inner join {{ ref('int_order_items_quarantined') }} as quarantined
    on fct.order_item_id = quarantined.order_item_id
union all
select
    'fct_bids' as mart,
    fct.bid_id as row_key
from {{ ref('fct_bids') }} as fct
inner join {{ ref('int_bids_quarantined') }} as quarantined
    on fct.bid_id = quarantined.bid_id
union all
select
    'dim_customers' as mart,
    dim.customer_id as row_key
from {{ ref('dim_customers') }} as dim
inner join {{ ref('int_customers_quarantined') }} as quarantined
    on dim.customer_id = quarantined.customer_id
union all
select
    'dim_products' as mart,
    dim.product_id as row_key
from {{ ref('dim_products') }} as dim
inner join {{ ref('int_products_quarantined') }} as quarantined
    on dim.product_id = quarantined.product_id
