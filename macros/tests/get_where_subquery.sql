{#- dbt wraps the model of every generic test in get_where_subquery (its `where` config). This
    override adds the changed-rows scope of an increment: with the var test_since, the
    row-by-row tests on the large incremental relations check only the rows this build wrote
    or the loader brought since then. test_since is a timestamp (`dbt build --vars
    '{"test_since": "2026-11-27T10:00:00+00:00"}'` by hand) or the word previous_build, which
    `elt run` passes to every build: the scope its run recorded in the run history
    (ops.pipeline_runs) before the build, read when the tests run (none after a first build,
    a changed project or --full-tests: every row); by hand, with no `elt run` building, the
    start of the last successful build. A word, not the timestamp itself, because dbt parses
    the whole project again whenever a var's value changes (about 11 s against 3-4 s for a
    partial parse on this machine, every run). Everything else, and every build without
    test_since (`dbt build` by hand), tests in full. -#}
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
    {%- if not var('test_since', none) or not execute or relation is string -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set since = test_since() -%}
    {%- if not since -%}
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

{#- The var test_since as a timestamp, or none to test every row: as given, or for
    previous_build the scope that the `elt run` building now recorded (its run is the one
    'running' with a build started), else the start of the last successful build. -#}
{% macro test_since() -%}
    {%- set since = var('test_since', none) -%}
    {%- if since != 'previous_build' -%}
        {{ return(since) }}
    {%- endif -%}
    {%- set runs = source('ops', 'pipeline_runs') -%}
    {%- set found = run_query(
        "select (coalesce((select array[summary ->> 'tests_since'] from " ~ runs
        ~ " where status = 'running' and summary ? 'dbt_build_started_at'"
        ~ " order by started_at desc limit 1),"
        ~ " (select array[summary ->> 'dbt_built_at'] from " ~ runs
        ~ " where status = 'success' order by started_at desc limit 1)))[1]") -%}
    {{ return(found.columns[0].values()[0] if found and found.rows | length > 0 else none) }}
{%- endmacro %}
