{#- A bid is set aside with the first rule it breaks. Increments re-validate the bids loaded
    since the newest here, those whose product or bidder was re-validated or deleted since (a
    price change reloads the product, so its bids are compared again), and those dated in the
    future (macros/incremental.sql, macros/validation.sql). -#}

{% call validated_rows(
    'bids', 'stg_marketplace__bids', key='bid_id', raw_table='bids',
    parents=[
        {'on': 'product_id', 'validated': 'int_products_validated',
         'snapshot': 'products_snapshot'},
        {'on': 'bidder_id', 'validated': 'int_customers_validated', 'key': 'customer_id',
         'snapshot': 'customers_snapshot'},
    ],
    compared=['product_price_at_bid'],
    future_dated=true,
) %}

-- The product's price when the bid was written: the earliest snapshot version still valid at
-- the bid's created_at (a price change in the same source transaction counts as after the
-- bid). Without any version yet, the current price stands in.
price_at_bid as (
    select distinct on (bids.bid_id)
        bids.bid_id,
        product_versions.price
    from bids
    inner join {{ ref('products_snapshot') }} as product_versions
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
            when {{ is_dated_in_future('bids.placed_at') }} then 'date_in_future'
            when products.product_id is null then 'product_not_found'
            when products.quarantine_reason is not null then 'product_quarantined'
            when bidders.customer_id is null then 'bidder_not_found'
            when bidders.quarantine_reason is not null then 'bidder_quarantined'
            when bids.bid_amount >= coalesce(price_at_bid.price, products.price)
                then 'bid_at_or_above_price'
        end as quarantine_reason
    from bids
    left join {{ ref('int_products_validated') }} as products
        on bids.product_id = products.product_id
    left join {{ ref('int_customers_validated') }} as bidders
        on bids.bidder_id = bidders.customer_id
    left join price_at_bid
        on bids.bid_id = price_at_bid.bid_id
)

{% endcall %}
