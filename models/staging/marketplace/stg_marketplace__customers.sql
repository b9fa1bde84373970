with

source as (
    select * from {{ source('marketplace', 'customers') }}
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
        source.customer_id::bigint as customer_id,

        -- strings
        {{ clean_email('source.email') }} as email,
        {{ clean_text('source.first_name') }} as first_name,
        {{ clean_text('source.last_name') }} as last_name,
        {{ clean_text('source.phone') }} as phone,
        {{ clean_text('source.street') }} as street,
        {{ clean_text('source.city') }} as city,
        {{ clean_text('source.state') }} as state_raw,
        states.state_code::text as state_code,
        {{ clean_text('source.zip') }} as zip_code,

        -- booleans
        states.state_code is null as is_state_unknown,

        -- dates
        source.birth_date::date as birth_date,

        -- timestamps
        source.registered_at::timestamptz as registered_at,
        source.created_at::timestamptz as created_at,
        source.updated_at::timestamptz as updated_at,

        -- load metadata
        source._dlt_load_id::text as _dlt_load_id,
        source._loaded_at::timestamptz as _loaded_at
    from source
    left join states
        on {{ state_lookup_key('source.state') }} = states.lookup_key
)

select * from renamed
