{#- Every version of every customer seen by the snapshot (SCD2). Customers that are
    quarantined today are left out, as in dim_customers; deleted ones keep their history. -#}

with

versions as (
    select * from {{ ref('customers_snapshot') }}
),

quarantined as (
    select * from {{ ref('int_customers_quarantined') }}
),

final as (
    select
        versions.dbt_scd_id as customer_version_id,
        versions.customer_id,
        versions.email,
        versions.first_name,
        versions.last_name,
        versions.phone,
        versions.street,
        versions.city,
        versions.state_code,
        versions.zip_code,
        versions.birth_date,
        versions.registered_at,
        versions.dbt_valid_from as valid_from,
        versions.dbt_valid_to as valid_to,
        versions.dbt_valid_to is null as is_current,
        bool_and(versions.dbt_valid_to is not null)
            over (partition by versions.customer_id) as is_deleted
    from versions
    left join quarantined
        on versions.customer_id = quarantined.customer_id
    where quarantined.customer_id is null
)

select * from final
