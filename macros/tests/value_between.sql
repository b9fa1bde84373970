{#- Values must lie between min_value and max_value (SQL literals, inclusive). -#}
{% test value_between(model, column_name, min_value, max_value) %}

select {{ column_name }} as failing_value, *
from {{ model }}
where {{ column_name }} < {{ min_value }}
    or {{ column_name }} > {{ max_value }}

{% endtest %}
