with

source as (
    select * from {{ source('marketplace', 'payments') }}
),

renamed as (
    select
        -- ids
        payment_id,
        order_id,

        -- strings
        {{ clean_code('method') }} as payment_method,
        {{ clean_code('status') }} as payment_status,

        -- numerics
        amount::numeric(14, 2) as amount,

        -- timestamps
        paid_at,
        created_at,
        updated_at,

        -- load metadata
        _dlt_load_id,
        _loaded_at
    from source
)

select * from renamed
