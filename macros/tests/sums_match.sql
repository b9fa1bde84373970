{#- The per-key sum of `column_name` equals the per-key value in `compare_model`
    (e.g. payments sum to the order total). Keys without any child row are skipped. On an
    increment (macros/tests/get_where_subquery.sql) only the keys with a changed child or a
    changed compared row are summed again, over all their child rows. -#}
{% test sums_match(model, column_name, compare_model, compare_column, key,
                   where_model='true', tolerance=0.005) %}

{%- set child_changed = changed_rows_predicate(model) -%}
{%- set compare_changed = changed_rows_predicate(compare_model) -%}
{%- set scoped = child_changed and compare_changed -%}

with

{% if scoped -%}
changed_keys as (
    select {{ key }} as match_key from {{ model }} where {{ child_changed }}
    union
    select {{ key }} as match_key from {{ compare_model }} where {{ compare_changed }}
),
{%- endif %}

child_sums as (
    select
        {{ key }} as match_key,
        sum({{ column_name }}) as child_total
    from {{ model }}
    where {{ where_model }}
    {% if scoped -%}
        and {{ key }} in (select changed_keys.match_key from changed_keys)
    {%- endif %}
    group by {{ key }}
)

select
    compare.{{ key }} as match_key,
    compare.{{ compare_column }} as expected_total,
    child_sums.child_total
from child_sums
inner join {{ compare_model }} as compare
    on child_sums.match_key = compare.{{ key }}
where abs(child_sums.child_total - compare.{{ compare_column }}) > {{ tolerance }}

{% endtest %}
