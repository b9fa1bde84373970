-- SCD2 sanity: at most one current version per key, and versions do not overlap.
{{ config(severity='error', store_failures=true) }}

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
        lead(versions.valid_from)
            over (partition by versions.entity, versions.entity_id order by versions.valid_from)
            as next_from,
        count(*) filter (where versions.is_current)
            over (partition by versions.entity, versions.entity_id)
            as current_count
    from versions
)

select *
from ordered
where current_count > 1 or (next_from is not null and valid_to > next_from)
