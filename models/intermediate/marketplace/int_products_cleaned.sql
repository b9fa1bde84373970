-- The products that pass every hard rule: what the marts read. A plain filter over the validated
-- table, without CTEs, so that PostgreSQL inlines the view and joins to it by index.
select *
from {{ ref('int_products_validated') }}
where quarantine_reason is null
