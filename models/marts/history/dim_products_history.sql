{#- Every version of every product seen by the snapshot (SCD2): price and status changes.
    Products quarantined today are left out; purged ones keep their history. -#}

with

versions as (
    select * from {{ ref('products_snapshot') }}
),

quarantined as (
    select * from {{ ref('int_products_quarantined') }}
),

final as (
    select
        versions.dbt_scd_id as product_version_id,
        versions.product_id,
        versions.seller_id,
        versions.product_name,
        versions.category,
        versions.product_status,
        versions.price,
        versions.dbt_valid_from as valid_from,
        versions.dbt_valid_to as valid_to,
        versions.dbt_valid_to is null as is_current,
        bool_and(versions.dbt_valid_to is not null)
            over (partition by versions.product_id) as is_deleted
    from versions
    left join quarantined
        on versions.product_id = quarantined.product_id
    where quarantined.product_id is null
)

select * from final
