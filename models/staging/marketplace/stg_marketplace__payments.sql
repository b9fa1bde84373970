with

source as (
    select * from {{ source('marketplace', 'payments') }}
),

renamed as (
    select
        -- ids
        payment_id::bigint as payment_id,
        order_id::bigint as order_id,

        -- strings
        {{ clean_code('method') }} as payment_method,
        {{ clean_code('status') }} as payment_status,

        -- numerics
        amount::numeric(14, 2) as amount,

        -- timestamps
        paid_at::timestamptz as paid_at,
        created_at::timestamptz as created_at,
        updated_at::timestamptz as updated_at,

        -- load metadata
        _dlt_load_id::text as _dlt_load_id,
        _loaded_at::timestamptz as _loaded_at
    from source
)

select * from renamed
