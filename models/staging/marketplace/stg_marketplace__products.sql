with

source as (
    select * from {{ source('marketplace', 'products') }}
),

renamed as (
    select
        -- ids
        product_id::bigint as product_id,
        seller_id::bigint as seller_id,

        -- strings
        {{ clean_text('name') }} as product_name,
        {{ clean_code('category') }} as category,
        {{ clean_code('status') }} as product_status,

        -- numerics
        price::numeric(12, 2) as price,

        -- timestamps
        created_at::timestamptz as created_at,
        updated_at::timestamptz as updated_at,

        -- load metadata
        _dlt_load_id::text as _dlt_load_id,
        _loaded_at::timestamptz as _loaded_at
    from source
)

select * from renamed
