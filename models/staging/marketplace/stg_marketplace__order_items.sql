with

source as (
    select * from {{ source('marketplace', 'order_items') }}
),

renamed as (
    select
        -- ids
        order_item_id::bigint as order_item_id,
        order_id::bigint as order_id,
        product_id::bigint as product_id,

        -- numerics
        quantity::integer as quantity,
        unit_price::numeric(12, 2) as unit_price,
        (quantity * unit_price)::numeric(14, 2) as line_amount,

        -- timestamps
        created_at::timestamptz as created_at,
        updated_at::timestamptz as updated_at,

        -- load metadata
        _dlt_load_id::text as _dlt_load_id,
        _loaded_at::timestamptz as _loaded_at
    from source
)

select * from renamed
