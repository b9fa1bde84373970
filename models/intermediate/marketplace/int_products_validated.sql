{#- Small enough to rebuild in full; a row keeps its _validated_at while its load and verdict
    stand, so the bids and items of unchanged products are not re-validated
    (macros/incremental.sql). -#}

{% call validated_rows(
    'products', 'stg_marketplace__products', key='product_id', materialized='table'
) %}

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
)

{% endcall %}
