{#- Completeness: every row of `raw` is either in the clean model or in `quarantine`, exactly
    once, matched on `key`. Fails with the keys that are missing or duplicated. -#}
{% test rows_reconcile(model, key, raw, quarantine) %}

with raw_keys as (
    select {{ key }} as row_key, count(*) as raw_rows
    from {{ raw }}
    group by {{ key }}
),

accounted as (
    select {{ key }} as row_key from {{ model }}
    union all
    select {{ key }} as row_key from {{ quarantine }}
),

accounted_keys as (
    select row_key, count(*) as accounted_rows
    from accounted
    group by row_key
)

select
    coalesce(raw_keys.row_key, accounted_keys.row_key) as row_key,
    coalesce(raw_keys.raw_rows, 0) as raw_rows,
    coalesce(accounted_keys.accounted_rows, 0) as accounted_rows
from raw_keys
full outer join accounted_keys
    on raw_keys.row_key = accounted_keys.row_key
where coalesce(raw_keys.raw_rows, 0) <> coalesce(accounted_keys.accounted_rows, 0)

{% endtest %}
