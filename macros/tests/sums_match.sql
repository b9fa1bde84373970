{#- The per-key sum of `column_name` equals the per-key value in `compare_model`
    (e.g. payments sum to the order total). Keys without any child row are skipped. -#}
{% test sums_match(model, column_name, compare_model, compare_column, key,
                   where_model='true', tolerance=0.005) %}

with child_sums as (
    select
        {{ key }} as match_key,
        sum({{ column_name }}) as child_total
    from {{ model }}
    where {{ where_model }}
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
