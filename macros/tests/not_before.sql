{#- A later event must not precede an earlier one on the same row (e.g. paid_at >= ordered_at),
    or, with `parent`, on the parent row joined by `key`. -#}
{% test not_before(model, column_name, earlier_column, parent=none, key=none) %}

{% if parent is none %}
select {{ column_name }} as failing_value, *
from {{ model }}
where {{ column_name }} < {{ earlier_column }}
{% else %}
select child.{{ column_name }} as failing_value, parent.{{ earlier_column }} as earlier_value
from (select * from {{ model }}) as child  -- model may be a filtered subquery
inner join {{ parent }} as parent
    on child.{{ key }} = parent.{{ key }}
where child.{{ column_name }} < parent.{{ earlier_column }}
{% endif %}

{% endtest %}
