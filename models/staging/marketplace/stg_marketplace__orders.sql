with

source as (
    select * from {{ source('marketplace', 'orders') }}
),

-- every spelling a state is matched on: its code and its name, upper case
states as (
    select
        state_code,
        upper(state_code) as lookup_key
    from {{ ref('us_states') }}
    union all
    select
        state_code,
        upper(state_name) as lookup_key
    from {{ ref('us_states') }}
),

renamed as (
    select
        -- ids
        source.order_id::bigint as order_id,
        source.customer_id::bigint as customer_id,

        -- strings
        {{ clean_code('source.status') }} as order_status,
        states.state_code::text as shipping_state_code,

        -- numerics
        source.total_amount::numeric(14, 2) as total_amount,

        -- dates
        {{ utc_date('source.ordered_at') }} as ordered_date,

        -- timestamps
        source.ordered_at::timestamptz as ordered_at,
        source.created_at::timestamptz as created_at,
        source.updated_at::timestamptz as updated_at,

        -- load metadata
        source._dlt_load_id::text as _dlt_load_id,
        source._loaded_at::timestamptz as _loaded_at
    from source
    left join states
        on {{ state_lookup_key('source.shipping_state') }} = states.lookup_key
)

select * from renamed
