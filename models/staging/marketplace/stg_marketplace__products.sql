with

source as (
    select * from {{ source('marketplace', 'products') }}
),

renamed as (
    select
        -- ids
        product_id,
        seller_id,

        -- strings
        {{ clean_text('name') }} as product_name,
        {{ clean_code('category') }} as category,
        {{ clean_code('status') }} as product_status,

        -- numerics
        price::numeric(12, 2) as price,

        -- timestamps
        created_at,
        updated_at,

        -- load metadata
        _dlt_load_id,
        _loaded_at
    from source
)

select * from renamed
