with

products as (
    select * from {{ ref('int_products_cleaned') }}
),

bids as (
    select * from {{ ref('int_bids_cleaned') }}
),

bid_summary as (
    select
        product_id,
        count(*) as bid_count,
        max(bid_amount) as highest_bid_amount
    from bids
    group by product_id
),

final as (
    select
        products.product_id,
        products.seller_id,
        products.product_name,
        products.category,
        products.product_status,
        products.price,
        coalesce(bid_summary.bid_count, 0) as bid_count,
        bid_summary.highest_bid_amount,
        products.created_at,
        products.updated_at,
        products._loaded_at
    from products
    left join bid_summary
        on products.product_id = bid_summary.product_id
)

select * from final
