{#- dbt wraps the model of every generic test in get_where_subquery (its `where` config). This
    override adds the changed-rows scope of an increment: when the runner passes the var
    test_since (the start of the previous successful build of the same project:
    `--vars '{"test_since": "..."}'`), the row-by-row tests on the large incremental
    relations check only the rows this build wrote or the loader brought since then.
    Everything else, and every build without test_since (a first build, a changed project,
    `dbt build` by hand), tests in full. -#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where') -%}
    {%- set scope = changed_rows_scope(relation) -%}
    {%- if scope and where -%}
        {%- set where = '(' ~ where ~ ') and ' ~ scope -%}
    {%- elif scope -%}
        {%- set where = scope -%}
    {%- endif -%}
    {%- if where -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ where ~ ') dbt_subquery') -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}

{#- Tests whose verdict on a row depends on that row alone (unique: the relations scoped below
    all have a unique index on their key, so a duplicate cannot be written anyway). -#}
{% macro row_wise_tests() -%}
    {{ return(['not_null', 'unique', 'accepted_values', 'relationships', 'expression_is_true',
               'not_before', 'valid_email',
               'accepted_range']) }}
{%- endmacro %}

{#- The predicate for the changed rows of `relation`, or none to test it in full. -#}
{% macro changed_rows_scope(relation) -%}
    {%- set since = var('test_since', none) -%}
    {%- if not since or not execute or model.resource_type != 'test' -%}
        {{ return(none) }}
    {%- endif -%}
    {%- if model.test_metadata is not defined
        or model.test_metadata.name not in row_wise_tests() -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return(changed_rows_predicate(relation)) }}
{%- endmacro %}

{#- The rows of `relation` this increment changed, as a predicate (none: not known, test all):
    also used by the tests that compare groups of rows (rows_reconcile, sums_match) to pick
    the keys they recheck. -#}
{% macro changed_rows_predicate(relation) -%}
    {%- set since = var('test_since', none) -%}
    {%- if not since or not execute or relation is string -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set names = adapter.get_columns_in_relation(relation) | map(attribute='name') | list -%}
    {%- if '_validated_at' in names -%}
        {#- validated tables, their clean and quarantine views, the facts: rows this build
            (re)wrote; the others stood unchanged through the previous build's tests -#}
        {{ return("_validated_at >= '" ~ run_started_at.isoformat() ~ "'::timestamptz") }}
    {%- elif '_loaded_at' in names and (relation.identifier.startswith('stg_')
                                        or relation.schema == source('marketplace', 'orders').schema) -%}
        {#- raw and the staging views over it: the rows the loader wrote since the previous
            build -#}
        {{ return("_loaded_at > '" ~ since ~ "'::timestamptz") }}
    {%- endif -%}
    {{ return(none) }}
{%- endmacro %}
