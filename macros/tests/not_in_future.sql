{#- Dates and timestamps must not lie in the future (beyond an allowed clock skew). -#}
{% test not_in_future(model, column_name, allowed_skew='1 hour') %}

select {{ column_name }} as failing_value, *
from {{ model }}
where {{ column_name }} > now() + interval '{{ allowed_skew }}'

{% endtest %}
