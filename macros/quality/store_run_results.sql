{#- The quality layer's on-run-end hook: every model, test, seed and snapshot result of this
    dbt invocation goes into quality.dbt_results, and the invocation into
    quality.dbt_invocations, in one statement batch (one round trip, no per-node queries), so
    the hook costs milliseconds. `elt report` reads these tables; retention is applied there.
    It runs on `dbt source freshness` too, serialised with the other invocations' hooks by
    project_hook_lock() (macros/roles.sql). Set var store_quality_results: false to skip it. -#}

{% macro quality_sql_literal(value) -%}
    {%- if value is none -%}
        null
    {%- else -%}
        '{{ value | string | replace("'", "''") }}'
    {%- endif -%}
{%- endmacro %}

{% macro quality_result_row(result) -%}
    {%- set node = result.node -%}
    {%- set timing = result.timing | selectattr('name', 'equalto', 'execute') | list -%}
    {%- set started = timing[0].started_at if timing else none -%}
    {%- set completed = timing[0].completed_at if timing else none -%}
    {%- set response = result.adapter_response or {} -%}
    {%- set stores_failures = node.resource_type == 'test'
        and node.config.store_failures -%}
    (
        {{ quality_sql_literal(invocation_id) }},
        {{ quality_sql_literal(node.unique_id) }},
        {{ quality_sql_literal(node.resource_type) }},
        {{ quality_sql_literal(node.name) }},
        {{ quality_sql_literal(result.status) }},
        {{ quality_sql_literal(node.config.severity
            if node.resource_type == 'test' else none) }},
        {{ result.execution_time or 0 }},
        {{ result.failures if result.failures is not none else 'null' }},
        {{ response.get('rows_affected') if response.get('rows_affected')
            is not none else 'null' }},
        {{ quality_sql_literal(result.message) }},
        {{ quality_sql_literal(node.relation_name if stores_failures
            or node.resource_type != 'test' else none) }},
        {{ quality_sql_literal(node.column_name if node.column_name is defined else none) }},
        {{ quality_sql_literal(started) }}::timestamptz,
        {{ quality_sql_literal(completed) }}::timestamptz
    )
{%- endmacro %}

{% macro store_run_results(results) -%}
    {%- if not execute or not var('store_quality_results', true) -%}
        select 1
    {%- else -%}
        {%- set rows = [] -%}
        {%- for result in results if result.node is defined and result.node.unique_id -%}
            {%- do rows.append(quality_result_row(result)) -%}
        {%- endfor -%}
        {#- one implicit transaction (a batch of statements): the lock is held to its end;
            two invocations creating the tables at once would collide in the catalog #}
        select {{ project_hook_lock() }};
        create schema if not exists quality;
        create table if not exists quality.dbt_invocations (
            invocation_id text primary key,
            command text,
            target_name text,
            started_at timestamptz,
            finished_at timestamptz not null default clock_timestamp(),
            nodes integer not null,
            errors integer not null,
            warnings integer not null
        );
        create table if not exists quality.dbt_results (
            invocation_id text not null,
            unique_id text not null,
            resource_type text not null,
            node_name text not null,
            status text,
            severity text,
            execution_seconds double precision,
            failures bigint,
            rows_affected bigint,
            message text,
            relation_name text,
            column_name text,
            started_at timestamptz,
            completed_at timestamptz,
            primary key (invocation_id, unique_id)
        );
        insert into quality.dbt_invocations (
            invocation_id, command, target_name, started_at, nodes, errors, warnings
        )
        values (
            {{ quality_sql_literal(invocation_id) }},
            {{ quality_sql_literal(flags.WHICH) }},
            {{ quality_sql_literal(target.name) }},
            {{ quality_sql_literal(run_started_at) }}::timestamptz,
            {{ rows | length }},
            {{ results | selectattr('status', 'in', ['error', 'fail']) | list | length }},
            {{ results | selectattr('status', 'equalto', 'warn') | list | length }}
        )
        on conflict (invocation_id) do update set
            finished_at = excluded.finished_at,
            nodes = quality.dbt_invocations.nodes + excluded.nodes,
            errors = quality.dbt_invocations.errors + excluded.errors,
            warnings = quality.dbt_invocations.warnings + excluded.warnings
        {%- if rows %};
        insert into quality.dbt_results
        values
        {{ rows | join(',\n') }}
        on conflict (invocation_id, unique_id) do nothing
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}
