{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='bid_id',
        on_schema_change='append_new_columns',
        indexes=[{'columns': ['bid_id'], 'unique': true}, {'columns': ['_loaded_at']}],
        post_hook=["{{ delete_missing_rows(ref('int_bids_cleaned'), 'bid_id') }}"],
    )
}}

{#- Increments on the loader's _loaded_at of the bid or its product (minus the lookback),
    plus clean bids not here yet; retracted (deleted) bids are removed by the post-hook. -#}

with

bids as (
    select * from {{ ref('int_bids_cleaned') }}
),

products as (
    select * from {{ ref('int_products_cleaned') }}
),

joined as (
    select
        -- ids
        bids.bid_id,
        bids.product_id,
        bids.bidder_id,
        products.seller_id,

        -- strings
        bids.bid_status,
        products.category,

        -- numerics
        bids.bid_amount,
        bids.product_price_at_bid,
        round(bids.bid_amount / bids.product_price_at_bid, 4) as bid_to_price_ratio,

        -- timestamps
        bids.placed_at,
        {{ utc_date('bids.placed_at') }} as placed_date,

        greatest(bids._loaded_at, products._loaded_at) as _loaded_at
    from bids
    inner join products
        on bids.product_id = products.product_id
),

final as (
    select joined.*
    from joined
    {% if is_incremental() %}
        left join {{ this }} as already_built
            on joined.bid_id = already_built.bid_id
        where
            joined._loaded_at > {{ incremental_cutoff() }}
            or already_built.bid_id is null
    {% endif %}
)

select * from final
