{#- The delete+insert strategy of the incremental models, for PostgreSQL. dbt's default deletes
    `where key in (select distinct key from <temp table>)`: the temp table has no statistics,
    so the planner guesses its size and hashes the whole target (2.5M rows of fct_order_items
    read to replace 20k). `key = any(array(...))` reads the keys first and deletes through the
    target's unique index. Composite keys keep dbt's default. -#}
{% macro postgres__get_delete_insert_merge_sql(
    target, source, unique_key, dest_columns, incremental_predicates
) -%}
    {%- set keys = [unique_key] if unique_key is string else unique_key -%}
    {%- if keys is none or keys | length != 1 -%}
        {{ return(default__get_delete_insert_merge_sql(
            target, source, unique_key, dest_columns, incremental_predicates
        )) }}
    {%- endif -%}
    {%- set key = keys[0] -%}
    {%- set dest_cols_csv = get_quoted_csv(dest_columns | map(attribute='name')) -%}
    delete from {{ target }} as dbt_internal_dest
    where
        {{ key }} = any(
            array(select dbt_internal_source.{{ key }} from {{ source }} as dbt_internal_source)
        )
        {%- for predicate in incremental_predicates or [] %}
            and {{ predicate }}
        {%- endfor %};

    insert into {{ target }} ({{ dest_cols_csv }})
    (
        select {{ dest_cols_csv }}
        from {{ source }}
    )
{%- endmacro %}
