{{
    config(
        materialized='table',
        indexes=[
            {'columns': ['product_id'], 'unique': true},
            {'columns': ['_validated_at']},
        ],
    )
}}

{#- Small enough to rebuild in full; a row keeps its _validated_at while its load and verdict
    stand, so the bids and items of unchanged products are not re-validated. -#}

{%- set previous = previous_build() %}

with

products as (
    select * from {{ ref('stg_marketplace__products') }}
),

sellers as (
    select * from {{ ref('int_customers_validated') }}
),

validated as (
    select
        products.*,
        case
            when products.price is null or products.price <= 0 then 'non_positive_price'
            when sellers.customer_id is null then 'seller_not_found'
            when sellers.quarantine_reason is not null then 'seller_quarantined'
        end as quarantine_reason
    from products
    left join sellers
        on products.seller_id = sellers.customer_id
),

final as (
    select
        validated.*,
        -- kept while the row's load and verdict stand (macros/incremental.sql)
        case
            when
                previous._loaded_at = validated._loaded_at
                and not (previous.quarantine_reason is distinct from validated.quarantine_reason)
                then previous._validated_at
            else {{ validation_time() }}
        end as _validated_at
    from validated
    left join {{ previous_or_empty(previous, 'validated') }} as previous
        on validated.product_id = previous.product_id
)

select * from final
