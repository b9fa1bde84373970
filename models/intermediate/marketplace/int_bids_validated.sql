{{ config(materialized='table', indexes=[{'columns': ['bid_id'], 'unique': true}]) }}

with

bids as (
    select * from {{ ref('stg_marketplace__bids') }}
),

products as (
    select * from {{ ref('int_products_validated') }}
),

bidders as (
    select * from {{ ref('int_customers_validated') }}
),

product_versions as (
    select * from {{ ref('products_snapshot') }}
),

-- The product's price when the bid was written: the earliest snapshot version still valid at
-- the bid's created_at (a price change in the same source transaction counts as after the
-- bid). Without any version yet, the current price stands in.
price_at_bid as (
    select distinct on (bids.bid_id)
        bids.bid_id,
        product_versions.price
    from bids
    inner join product_versions
        on
            bids.product_id = product_versions.product_id
            and coalesce(product_versions.dbt_valid_to, 'infinity') >= bids.created_at
    order by bids.bid_id asc, product_versions.dbt_valid_from asc
),

validated as (
    select
        bids.*,
        coalesce(price_at_bid.price, products.price) as product_price_at_bid,
        case
            when bids.bid_amount is null or bids.bid_amount <= 0 then 'non_positive_amount'
            when products.product_id is null then 'product_not_found'
            when products.quarantine_reason is not null then 'product_quarantined'
            when bidders.customer_id is null then 'bidder_not_found'
            when bidders.quarantine_reason is not null then 'bidder_quarantined'
            when bids.bid_amount >= coalesce(price_at_bid.price, products.price)
                then 'bid_at_or_above_price'
        end as quarantine_reason
    from bids
    left join products
        on bids.product_id = products.product_id
    left join bidders
        on bids.bidder_id = bidders.customer_id
    left join price_at_bid
        on bids.bid_id = price_at_bid.bid_id
)

select * from validated
