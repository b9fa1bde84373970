{#- Emails must look like local@domain.tld (nulls are left to not_null). -#}
{% test valid_email(model, column_name) %}

select {{ column_name }} as failing_value, *
from {{ model }}
where {{ column_name }} is not null
    and not {{ is_valid_email(column_name) }}

{% endtest %}
