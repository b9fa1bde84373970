{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        tags=['incremental'],
        unique_key='bid_id',
        on_schema_change='append_new_columns',
        indexes=[
            {'columns': ['bid_id'], 'unique': true},
            {'columns': ['_loaded_at']},
            {'columns': ['_validated_at']},
            {'columns': ['product_id']},
            {'columns': ['bidder_id']},
        ],
        post_hook=[
            "{{ delete_missing_rows(ref('stg_marketplace__bids'), 'bid_id', 'bids') }}",
            "{{ index_quarantined_rows() }}",
        ],
    )
}}

{#- Increments re-validate the bids loaded since the newest here, and those whose product or
    bidder was re-validated since: a price change reloads the product, so its bids are
    compared again (macros/incremental.sql), and those set aside as dated in the future
    (macros/validation.sql). -#}

-- depends_on: {{ ref('customers_snapshot') }}

{%- set previous = previous_build() if is_incremental() else none %}
{#- one compile-time query for the cutoff, however often it is used below #}
{%- set cutoff = incremental_cutoff('_validated_at') if previous is not none %}
{#- `key = any(array(...))`, not `key in (...)`: a condition PostgreSQL pushes into the view
    below and answers by index, where a semi-join would scan it whole. #}

with

bids as (
    select * from {{ ref('stg_marketplace__bids') }}
    {% if previous is not none -%}
        where
            bid_id = any(
                array(
                    select changed.bid_id
                    from {{ ref('stg_marketplace__bids') }} as changed
                    where changed._loaded_at > {{ incremental_cutoff() }}
                    union
                    select built.bid_id
                    from {{ previous }} as built
                    inner join {{ ref('int_products_validated') }} as products
                        on built.product_id = products.product_id
                    where products._validated_at > {{ cutoff }}
                    union
                    select built.bid_id
                    from {{ previous }} as built
                    inner join {{ ref('int_customers_validated') }} as bidders
                        on built.bidder_id = bidders.customer_id
                    where bidders._validated_at > {{ cutoff }}
                    union
                    select built.bid_id
                    from {{ previous }} as built
                    where
                        built.product_id in (
                            {{ closed_since('products_snapshot', 'product_id', cutoff) }}
                        )
                    union
                    select built.bid_id
                    from {{ previous }} as built
                    where
                        built.bidder_id in (
                            {{ closed_since('customers_snapshot', 'customer_id', cutoff) }}
                        )
                    union
                    -- a row dated in the future is checked again until its time comes
                    select built.bid_id
                    from {{ previous }} as built
                    where built.quarantine_reason = 'date_in_future'
                )
            )
    {%- endif %}
),

products as (
    select * from {{ ref('int_products_validated') }}
),

bidders as (
    select * from {{ ref('int_customers_validated') }}
),

product_versions as (
    select * from {{ ref('products_snapshot') }}
),

-- The product's price when the bid was written: the earliest snapshot version still valid at
-- the bid's created_at (a price change in the same source transaction counts as after the
-- bid). Without any version yet, the current price stands in.
price_at_bid as (
    select distinct on (bids.bid_id)
        bids.bid_id,
        product_versions.price
    from bids
    inner join product_versions
        on
            bids.product_id = product_versions.product_id
            and coalesce(product_versions.dbt_valid_to, 'infinity') >= bids.created_at
    order by bids.bid_id asc, product_versions.dbt_valid_from asc
),

validated as (
    select
        bids.*,
        coalesce(price_at_bid.price, products.price) as product_price_at_bid,
        case
            when bids.bid_amount is null or bids.bid_amount <= 0 then 'non_positive_amount'
            when {{ is_dated_in_future('bids.placed_at') }} then 'date_in_future'
            when products.product_id is null then 'product_not_found'
            when products.quarantine_reason is not null then 'product_quarantined'
            when bidders.customer_id is null then 'bidder_not_found'
            when bidders.quarantine_reason is not null then 'bidder_quarantined'
            when bids.bid_amount >= coalesce(price_at_bid.price, products.price)
                then 'bid_at_or_above_price'
        end as quarantine_reason
    from bids
    left join products
        on bids.product_id = products.product_id
    left join bidders
        on bids.bidder_id = bidders.customer_id
    left join price_at_bid
        on bids.bid_id = price_at_bid.bid_id
),

final as (
    select
        validated.*,
        -- kept while the row's load and verdict stand (macros/incremental.sql)
        case
            when
                previous._loaded_at = validated._loaded_at
                and not (previous.quarantine_reason is distinct from validated.quarantine_reason)
                and not (
                    previous.product_price_at_bid
                    is distinct from validated.product_price_at_bid
                )
                then previous._validated_at
            else {{ validation_time() }}
        end as _validated_at
    from validated
    left join {{ previous_or_empty(previous, 'validated') }} as previous
        on validated.bid_id = previous.bid_id
)

select * from final
