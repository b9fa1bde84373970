-- An order's clean lines should add up to its total. Warns: quarantining a line (e.g. its
-- product was purged) leaves the order short, which the report should show, not block.
{{ config(severity='warn', store_failures=true) }}

select
    order_id,
    total_amount,
    items_amount
from {{ ref('fct_orders') }}
where items_amount <> total_amount
