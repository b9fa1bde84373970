with

source as (
    select * from {{ source('marketplace', 'bids') }}
),

renamed as (
    select
        -- ids
        bid_id,
        product_id,
        bidder_id,

        -- strings
        {{ clean_code('status') }} as bid_status,

        -- numerics
        amount::numeric(12, 2) as bid_amount,

        -- timestamps
        placed_at,
        created_at,
        updated_at,

        -- load metadata
        _dlt_load_id,
        _loaded_at
    from source
)

select * from renamed
