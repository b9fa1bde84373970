{#- No two rows share the same values in `combination_of_columns` (duplicates check). On an
    increment (macros/tests/get_where_subquery.sql) only the combinations of changed rows are
    looked for, still among all rows. -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

{%- set columns = combination_of_columns | join(', ') -%}
{%- set changed = changed_rows_predicate(model) -%}

select
    {{ columns }},
    count(*) as duplicate_rows
from {{ model }}
{% if changed -%}
    where ({{ columns }}) in (select {{ columns }} from {{ model }} where {{ changed }})
{%- endif %}
group by {{ columns }}
having count(*) > 1

{% endtest %}
