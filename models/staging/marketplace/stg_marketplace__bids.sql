with

source as (
    select * from {{ source('marketplace', 'bids') }}
),

renamed as (
    select
        -- ids
        bid_id::bigint as bid_id,
        product_id::bigint as product_id,
        bidder_id::bigint as bidder_id,

        -- strings
        {{ clean_code('status') }} as bid_status,

        -- numerics
        amount::numeric(12, 2) as bid_amount,

        -- timestamps
        placed_at::timestamptz as placed_at,
        created_at::timestamptz as created_at,
        updated_at::timestamptz as updated_at,

        -- load metadata
        _dlt_load_id::text as _dlt_load_id,
        _loaded_at::timestamptz as _loaded_at
    from source
)

select * from renamed
