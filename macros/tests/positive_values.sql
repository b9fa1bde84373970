{#- Values must be strictly positive (nulls are left to not_null). -#}
{% test positive_values(model, column_name) %}

select {{ column_name }} as failing_value, *
from {{ model }}
where {{ column_name }} <= 0

{% endtest %}
