{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='bid_id',
        on_schema_change='append_new_columns',
        indexes=[
            {'columns': ['_loaded_at']},
            {'columns': ['_validated_at']},
            {'columns': ['product_id']},
        ],
        post_hook=[
            "{{ delete_requarantined_rows(ref('int_bids_validated'), 'bid_id') }}",
            "{{ delete_missing_rows(ref('int_bids_cleaned'), 'bid_id', 'bids') }}",
        ],
    )
}}

{#- Increments rebuild the bids whose validated row or product was (re)validated since the
    newest _validated_at here (macros/incremental.sql); retracted (deleted) and newly
    quarantined bids are removed by the post-hook. -#}

-- the increment reads the validated tables behind the clean views
-- depends_on: {{ ref('int_bids_validated') }}
-- depends_on: {{ ref('int_products_validated') }}
-- and, after its insert, the loader's tombstones (delete_missing_rows)
-- depends_on: {{ source('ops', 'raw_deletes') }}

{%- set previous = previous_build() if is_incremental() else none %}
{#- one compile-time query for the cutoff, however often it is used below #}
{%- set cutoff = incremental_cutoff('_validated_at') if previous is not none %}
{#- `key = any(array(...))`, not `key in (...)`: a condition PostgreSQL pushes into the view
    below and answers by index, where a semi-join would scan it whole. #}

with

bids as (
    select * from {{ ref('int_bids_cleaned') }}
    {% if previous is not none -%}
        where
            bid_id = any(
                array(
                    select changed.bid_id
                    from {{ ref('int_bids_validated') }} as changed
                    where changed._validated_at > {{ cutoff }}
                    union
                    select built.bid_id
                    from {{ previous }} as built
                    inner join {{ ref('int_products_validated') }} as changed_products
                        on built.product_id = changed_products.product_id
                    where changed_products._validated_at > {{ cutoff }}
                )
            )
    {%- endif %}
),

products as (
    select * from {{ ref('int_products_cleaned') }}
),

joined as (
    select
        -- ids
        bids.bid_id,
        bids.product_id,
        bids.bidder_id,
        products.seller_id,

        -- strings
        bids.bid_status,
        products.category,

        -- numerics
        bids.bid_amount,
        bids.product_price_at_bid,
        round(bids.bid_amount / bids.product_price_at_bid, 4) as bid_to_price_ratio,

        -- timestamps
        bids.placed_at,
        {{ utc_date('bids.placed_at') }} as placed_date,

        greatest(bids._loaded_at, products._loaded_at) as _loaded_at,
        {{ validation_time() }} as _validated_at
    from bids
    inner join products
        on bids.product_id = products.product_id
),

final as (
    select * from joined
)

select * from final
