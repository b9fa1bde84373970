{#- Write-audit-publish of the marts (issue #14): what `reporter` reads changes only when a
    build and its error-severity tests succeed, and then every mart changes at once.

    dbt builds the marts as tables into `marts_build` (write). The build's tests read them
    there (audit). `marts` holds one view per mart over `marts_live`, the copy published last;
    `reporter` reads those views and nothing else. Publishing renames marts_build to
    marts_live and the old marts_live to marts_build, and repoints every view, in one
    transaction (PostgreSQL DDL is transactional): a reader sees every mart of the new build
    or none of them. A build that fails, is killed or builds only some marts leaves `marts`
    as it was.

    The copy dbt writes into is always the one named marts_build, so no `dbt build` ever
    writes what reporters read, and no var names the copy. After a publish it holds the
    previous live copy: its incremental facts catch up from their own newest _validated_at
    and tombstones (macros/incremental.sql), one build behind. The first publish starts the
    build copy as a copy of the incremental marts; a full refresh in one copy drops those
    tables in the other at publish, so the next build rebuilds them whole.

    Each copy's state is a JSON comment on its schema:
      building  an invocation that writes marts started (on-run-start) and has not ended
      built     one invocation built every mart without an error or a failed test; `tested`
                when it was a `dbt build` that ran every error-severity test of the marts
      failed    an invocation ended with an error, a failed test, or without every mart
      live      the published copy (marts_live)
      stale     the copy published before it: the next build brings it up to date
    `dbt build` publishes at its end when its copy is built and tested (on-run-end hook,
    var publish_on_build); `dbt run-operation publish_marts` publishes a built copy by hand
    (after `dbt run`, say) and refuses any other. Every publish is a row of
    quality.mart_publications. -#}

{#- The three schemas, as this target names them (macros/generate_schema_name.sql). -#}
{% macro marts_schemas() -%}
    {{ return({
        'views': generate_schema_name('marts', none) | trim,
        'build': generate_schema_name('marts_build', none) | trim,
        'live': generate_schema_name('marts_live', none) | trim,
    }) }}
{%- endmacro %}

{#- The mart models: the models dbt builds into the build copy (models/marts). -#}
{% macro mart_nodes() -%}
    {%- set build = marts_schemas().build -%}
    {%- set found = [] -%}
    {%- for node in graph.nodes.values()
        if node.resource_type == 'model' and node.schema == build -%}
        {%- do found.append(node) -%}
    {%- endfor -%}
    {{ return(found | sort(attribute='name')) }}
{%- endmacro %}

{#- The state recorded on a copy's schema ({} when none is). -#}
{% macro marts_copy_state(schema) -%}
    {%- set found = run_query(
        "select obj_description(oid, 'pg_namespace') from pg_namespace where nspname = '"
        ~ schema ~ "'"
    ) -%}
    {%- set text = found.columns[0].values()[0] if found.rows | length else none -%}
    {%- set state = fromjson(text) if text else none -%}
    {{ return(state if state is mapping else {}) }}
{%- endmacro %}

{% macro marts_state_literal(state) -%}
    '{{ tojson(state) | replace("'", "''") }}'
{%- endmacro %}

{#- Invocations that write models; `dbt compile`, `docs generate` and `test` write none. -#}
{% macro writes_marts() -%}
    {%- if not execute or flags.WHICH not in ['build', 'run', 'retry'] -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set marts = mart_nodes() | map(attribute='unique_id') | list -%}
    {{ return(selected_resources | select('in', marts) | list | length > 0) }}
{%- endmacro %}

{#- on-run-start: the build copy is being written, so a kill leaves it marked `building` and
    `publish_marts` refuses it. A full refresh not yet published is carried forward. -#}
{% macro mark_marts_build_started() -%}
    {%- if not writes_marts() -%}
        select 1
    {%- else -%}
        {%- set build = marts_schemas().build -%}
        {%- set previous = marts_copy_state(build) -%}
        {%- set state = {
            'state': 'building',
            'invocation_id': invocation_id,
            'command': flags.WHICH,
            'started_at': run_started_at.isoformat(),
            'refreshed': previous.get('refreshed', [])
                if previous.get('state') in ['building', 'built', 'failed'] else [],
        } -%}
        select {{ project_hook_lock() }};
        comment on schema {{ adapter.quote(build) }} is {{ marts_state_literal(state) }}
    {%- endif -%}
{%- endmacro %}

{#- on-run-end: record how the build copy ended and, when every mart was built and every
    error-severity test of the marts passed in this `dbt build`, publish it. -#}
{% macro finish_marts_build(results) -%}
    {%- if not writes_marts() -%}
        select 1
    {%- else -%}
        {%- set build = marts_schemas().build -%}
        {%- set marts = mart_nodes() -%}
        {%- set ids = marts | map(attribute='unique_id') | list -%}
        {%- set status = {} -%}
        {%- for result in results if result.node is defined -%}
            {%- do status.update({result.node.unique_id: result.status | string}) -%}
        {%- endfor -%}
        {%- set built = [] -%}
        {%- for node in marts if status.get(node.unique_id) == 'success' -%}
            {%- do built.append(node) -%}
        {%- endfor -%}
        {%- set broken = status.values() | select('in', [
            'error', 'fail', 'skipped', 'runtime error', 'partial success'
        ]) | list -%}
        {#- the audit: every error-severity data test that reads a mart passed (a unit test
            that fails skips its model, which is then not built) -#}
        {%- set untested = [] -%}
        {%- for node in graph.nodes.values()
            if node.resource_type == 'test'
            and (node.config.severity or 'error') | lower == 'error'
            and node.depends_on.nodes | select('in', ids) | list -%}
            {%- if status.get(node.unique_id) not in ['pass', 'warn'] -%}
                {%- do untested.append(node.name) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- set previous = marts_copy_state(build) -%}
        {%- set refreshed = previous.get('refreshed', []) -%}
        {%- if flags.FULL_REFRESH -%}
            {%- for node in built if node.config.materialized == 'incremental'
                and node.name not in refreshed -%}
                {%- do refreshed.append(node.name) -%}
            {%- endfor -%}
        {%- endif -%}
        {%- set complete = built | length == marts | length and not broken -%}
        {%- set state = {
            'state': 'built' if complete else 'failed',
            'invocation_id': invocation_id,
            'command': flags.WHICH,
            'started_at': run_started_at.isoformat(),
            'tested': flags.WHICH == 'build' and not untested,
            'refreshed': refreshed,
        } -%}
        {%- if complete and state.tested and var('publish_on_build', true) -%}
            {{ publish_marts_sql(state) }}
        {%- else -%}
            select {{ project_hook_lock() }};
            comment on schema {{ adapter.quote(build) }} is {{ marts_state_literal(state) }}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}

{#- `dbt run-operation publish_marts`: publish the build copy by hand. It must hold a
    complete build (state `built`): not one that is running or was killed (`building`),
    failed, or was published before (`stale`). -#}
{% macro publish_marts() -%}
    {%- set schemas = marts_schemas() -%}
    {%- set state = marts_copy_state(schemas.build) -%}
    {%- if state.get('state') != 'built' -%}
        {%- set why = {
            'building': 'a build started by invocation ' ~ state.get('invocation_id')
                ~ ' at ' ~ state.get('started_at') ~ ' is running or was killed',
            'failed': 'the last build (invocation ' ~ state.get('invocation_id')
                ~ ') failed or did not build every mart',
            'stale': 'it holds the marts published before the live ones',
        }.get(state.get('state'), 'no build of every mart is recorded there') -%}
        {{ exceptions.raise_compiler_error(
            'nothing to publish in ' ~ schemas.build ~ ': ' ~ why
            ~ '. Run `dbt build` (it publishes when every mart is built and tested).'
        ) }}
    {%- endif -%}
    {%- if not state.get('tested') -%}
        {{ log('publish_marts: the ' ~ state.get('command') ~ ' that built ' ~ schemas.build
            ~ ' did not run every error-severity test of the marts', info=true) }}
    {%- endif -%}
    {%- do run_query(publish_marts_sql(state)) -%}
    {%- do run_query(grant_role_privileges()) -%}
    {%- do run_query('commit') -%}
    {{ log('published the marts built by invocation ' ~ state.invocation_id ~ ': '
        ~ schemas.views ~ ' now reads ' ~ schemas.live, info=true) }}
{%- endmacro %}

{#- The publish itself: one DO block, so one transaction. Readers of a view hold a lock on
    it; each attempt waits `publish_lock_timeout` at most for a lock and, failing that, lets
    go of every lock it took and tries again (readers are never queued behind a publish
    for longer), up to `publish_attempts` times. -#}
{% macro publish_marts_sql(state) -%}
    {%- set schemas = marts_schemas() -%}
    {%- set marts = mart_nodes() | map(attribute='name') | list -%}
    {%- set incremental = mart_nodes() | selectattr('config.materialized', 'equalto',
                                                    'incremental') | map(attribute='name') | list -%}
    {%- set refreshed = state.get('refreshed', []) -%}
    do $publish$
    declare
        views_schema text := '{{ schemas.views }}';
        build_schema text := '{{ schemas.build }}';
        live_schema text := '{{ schemas.live }}';
        swap_schema text := '{{ schemas.build }}__publishing';
        marts text[] := array[{% for m in marts %}'{{ m }}'{{ ", " if not loop.last }}{% endfor %}]::text[];
        incremental text[] := array[{% for m in incremental %}'{{ m }}'{{ ", " if not loop.last }}{% endfor %}]::text[];
        refreshed text[] := array[{% for m in refreshed %}'{{ m }}'{{ ", " if not loop.last }}{% endfor %}]::text[];
        built jsonb := {{ marts_state_literal(state) }};
        replaced text;
        mart text;
        missing text[];
        col record;
        gone record;
        attempt integer := 0;
        first boolean;
    begin
        perform pg_advisory_xact_lock(7432003);  -- one publish at a time
        select array_agg(m) into missing from unnest(marts) as m
        where to_regclass(format('%I.%I', build_schema, m)) is null;
        if missing is not null then
            raise exception 'cannot publish the marts: % lacks %', build_schema,
                array_to_string(missing, ', ')
                using hint = 'build every mart first (dbt build)';
        end if;
        perform set_config('lock_timeout', '{{ var("publish_lock_timeout", "2s") }}', true);
        loop
            attempt := attempt + 1;
            begin
                -- swap the copies' names
                if to_regnamespace(live_schema) is not null then
                    execute format('alter schema %I rename to %I', live_schema, swap_schema);
                end if;
                execute format('alter schema %I rename to %I', build_schema, live_schema);
                first := to_regnamespace(swap_schema) is null;
                if first then
                    execute format('create schema %I', build_schema);
                else
                    execute format('alter schema %I rename to %I', swap_schema, build_schema);
                end if;
                replaced := obj_description(to_regnamespace(build_schema), 'pg_namespace');
                execute format('create schema if not exists %I', views_schema);

                -- repoint every view; create or replace keeps its grants and its dependents
                foreach mart in array marts loop
                    -- a mart table built before the marts were published (a warehouse of an
                    -- older version): it becomes the build copy's, which catches it up
                    if (select relkind from pg_class
                        where oid = to_regclass(format('%I.%I', views_schema, mart)))
                        in ('r', 'p') then
                        if to_regclass(format('%I.%I', build_schema, mart)) is null
                            and mart <> all(refreshed) then
                            execute format('alter table %I.%I set schema %I',
                                           views_schema, mart, build_schema);
                        else
                            execute format('drop table %I.%I', views_schema, mart);
                        end if;
                    end if;
                    begin
                        execute format('create or replace view %I.%I as select * from %I.%I',
                                       views_schema, mart, live_schema, mart);
                    exception when invalid_table_definition then
                        -- a column dropped, renamed or retyped: a view cannot be replaced so
                        execute format('drop view %I.%I', views_schema, mart);
                        execute format('create view %I.%I as select * from %I.%I',
                                       views_schema, mart, live_schema, mart);
                    end;
                    -- persist_docs wrote the descriptions on the tables: readers see them here
                    execute format('comment on view %I.%I is %L', views_schema, mart,
                        obj_description(to_regclass(format('%I.%I', live_schema, mart)),
                                        'pg_class'));
                    for col in
                        select a.attname, col_description(a.attrelid, a.attnum) as description
                        from pg_attribute as a
                        where a.attrelid = to_regclass(format('%I.%I', live_schema, mart))
                            and a.attnum > 0 and not a.attisdropped
                    loop
                        execute format('comment on column %I.%I.%I is %L', views_schema, mart,
                                       col.attname, col.description);
                    end loop;
                end loop;

                -- views of marts that left the project would read a copy no build updates
                for gone in
                    select distinct v.relname from pg_class as v
                    inner join pg_rewrite as r on r.ev_class = v.oid
                    inner join pg_depend as d
                        on d.classid = 'pg_rewrite'::regclass and d.objid = r.oid
                        and d.refclassid = 'pg_class'::regclass
                    inner join pg_class as t on t.oid = d.refobjid
                    where v.relnamespace = to_regnamespace(views_schema) and v.relkind = 'v'
                        and t.relnamespace in (to_regnamespace(live_schema),
                                               to_regnamespace(build_schema))
                        and v.relname <> all(marts)
                loop
                    execute format('drop view %I.%I', views_schema, gone.relname);
                end loop;

                if first then
                    -- the first publish: the build copy starts as a copy of the incremental
                    -- marts (cheaper than building them whole), so every build is incremental
                    foreach mart in array incremental loop
                        continue when to_regclass(format('%I.%I', build_schema, mart)) is not null;
                        execute format('create table %I.%I (like %I.%I including all)',
                                       build_schema, mart, live_schema, mart);
                        execute format('insert into %I.%I select * from %I.%I',
                                       build_schema, mart, live_schema, mart);
                        execute format('analyze %I.%I', build_schema, mart);
                    end loop;
                else
                    -- a table refreshed in full in the published copy is rebuilt whole in the
                    -- other one by its next build
                    foreach mart in array refreshed loop
                        execute format('drop table if exists %I.%I', build_schema, mart);
                    end loop;
                end if;

                execute format('comment on schema %I is %L', live_schema,
                    (built || jsonb_build_object('state', 'live', 'published_at', now()))::text);
                execute format('comment on schema %I is %L', build_schema, jsonb_build_object(
                    'state', 'stale',
                    'invocation_id', case when left(replaced, 1) = '{' then replaced::jsonb
                        ->> 'invocation_id' end,
                    'replaced_at', now())::text);
                execute format('comment on schema %I is %L', views_schema,
                    'The marts: one view per mart over ' || live_schema || ', the copy '
                    || 'published last (write-audit-publish, macros/publish.sql).');
                exit;
            exception when lock_not_available or deadlock_detected then
                if attempt >= {{ var('publish_attempts', 30) }} then
                    raise exception 'cannot publish the marts: readers held them through % attempts',
                        attempt using hint = 'end long transactions on the marts';
                end if;
                perform pg_sleep(1);
            end;
        end loop;

        perform {{ project_hook_lock() }};
        -- the marts' dbt `grants` config (dbt_project.yml) on their views, which are the
        -- publish's relations, not dbt's: dbt grants only on what it builds, and a view
        -- recreated above (a changed column) starts without grants
        {%- for node in mart_nodes() if node.config.grants %}
            {%- set view = api.Relation.create(
                database=target.database, schema=schemas.views, identifier=node.name,
                type='view') %}
            {%- for statement in get_dcl_statement_list(view, node.config.grants,
                                                        get_grant_sql) %}
        {{ statement }};
            {%- endfor %}
        {%- endfor %}
        create schema if not exists quality;
        create table if not exists quality.mart_publications (
            published_at timestamptz not null default clock_timestamp(),
            built_by text not null,
            built_at timestamptz,
            command text,
            tested boolean,
            published_by text not null,
            live_schema text not null,
            marts text[] not null,
            rebuilt_whole_next text[] not null
        );
        insert into quality.mart_publications (
            built_by, built_at, command, tested, published_by, live_schema, marts,
            rebuilt_whole_next
        )
        values (
            built ->> 'invocation_id', (built ->> 'started_at')::timestamptz,
            built ->> 'command', (built ->> 'tested')::boolean, '{{ invocation_id }}',
            live_schema, marts, refreshed
        );
    end
    $publish$
{%- endmacro %}
