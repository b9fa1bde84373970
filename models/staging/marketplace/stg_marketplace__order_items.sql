with

source as (
    select * from {{ source('marketplace', 'order_items') }}
),

renamed as (
    select
        -- ids
        order_item_id,
        order_id,
        product_id,

        -- numerics
        quantity,
        unit_price::numeric(12, 2) as unit_price,
        (quantity * unit_price)::numeric(14, 2) as line_amount,

        -- timestamps
        created_at,
        updated_at,

        -- load metadata
        _dlt_load_id,
        _loaded_at
    from source
)

select * from renamed
