{#- Rows for which `expression` is not true fail (a home-made dbt_utils.expression_is_true).
    As a column test, the expression may refer to the column; `where` filters the rows. -#}
{% test expression_is_true(model, expression, column_name=none) %}

select *
from {{ model }}
where not coalesce(({{ expression }}), false)

{% endtest %}
