{#- Completeness: every row of `raw` is either in the clean model or in `quarantine`, exactly
    once, matched on `key`. Fails with the keys that are missing or duplicated.
    On an increment (macros/tests/get_where_subquery.sql) it rechecks the keys the loader or
    this build touched, and the totals, which catch a row lost anywhere else. -#}
{% test rows_reconcile(model, key, raw, quarantine) %}

{%- set raw_changed = changed_rows_predicate(raw) -%}
{%- set model_changed = changed_rows_predicate(model) -%}
{%- set quarantine_changed = changed_rows_predicate(quarantine) -%}
{%- set scoped = raw_changed and model_changed and quarantine_changed -%}

with

{% if scoped -%}
changed_keys as (
    select {{ key }} as row_key from {{ raw }} where {{ raw_changed }}
    union
    select {{ key }} as row_key from {{ model }} where {{ model_changed }}
    union
    select {{ key }} as row_key from {{ quarantine }} where {{ quarantine_changed }}
),
{%- endif %}

raw_keys as (
    select {{ key }} as row_key, count(*) as raw_rows
    from {{ raw }}
    {% if scoped -%}
        where {{ key }} in (select changed_keys.row_key from changed_keys)
    {%- endif %}
    group by {{ key }}
),

accounted as (
    select {{ key }} as row_key from {{ model }}
    {% if scoped -%}
        where {{ key }} in (select changed_keys.row_key from changed_keys)
    {%- endif %}
    union all
    select {{ key }} as row_key from {{ quarantine }}
    {% if scoped -%}
        where {{ key }} in (select changed_keys.row_key from changed_keys)
    {%- endif %}
),

accounted_keys as (
    select row_key, count(*) as accounted_rows
    from accounted
    group by row_key
),

mismatched as (
    select
        coalesce(raw_keys.row_key, accounted_keys.row_key) as row_key,
        coalesce(raw_keys.raw_rows, 0) as raw_rows,
        coalesce(accounted_keys.accounted_rows, 0) as accounted_rows
    from raw_keys
    full outer join accounted_keys
        on raw_keys.row_key = accounted_keys.row_key
    where coalesce(raw_keys.raw_rows, 0) <> coalesce(accounted_keys.accounted_rows, 0)
)

select * from mismatched
{% if scoped -%}
union all
-- the totals: a row lost or left over outside the keys rechecked above
select null as row_key, totals.raw_rows, totals.accounted_rows
from (
    select
        (select count(*) from {{ raw }}) as raw_rows,
        (select count(*) from {{ model }}) + (select count(*) from {{ quarantine }})
            as accounted_rows
) as totals
where totals.raw_rows <> totals.accounted_rows
{%- endif %}

{% endtest %}
