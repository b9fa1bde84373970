-- SCD2 sanity: at most one current version per key, and versions do not overlap.
{{ config(severity='error') }}

with

versions as (
    select
        'customer' as entity,
        customer_id as entity_id,
        valid_from,
        valid_to,
        is_current
    from {{ ref('dim_customers_history') }}
    union all
    select
        'product' as entity,
        product_id as entity_id,
        valid_from,
        valid_to,
        is_current
    from {{ ref('dim_products_history') }}
),

ordered as (
    select
        versions.*,
        lead(valid_from) over (partition by entity, entity_id order by valid_from) as next_from,
        count(*) filter (where is_current) over (partition by entity, entity_id) as current_count
    from versions
)

select *
from ordered
where current_count > 1 or (next_from is not null and valid_to > next_from)
