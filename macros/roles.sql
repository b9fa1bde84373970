{#- Least-privilege roles, created and granted by the project (issue: roles and grants).
      loader      writes the raw schemas only (and may create them);
      transformer reads raw and owns/writes the dbt schemas;
      reporter    reads the marts only.
    The roles are NOLOGIN groups: grant them to real login users (`grant reporter to bi_user`).
    Creating roles needs CREATEROLE; without it (a locked-down prod) creation is skipped and
    only the grants run. Set var manage_roles: false to leave roles and grants alone. -#}

{% macro role_names() -%}
    {{ return({
        'loader': var('loader_role', 'loader'),
        'transformer': var('transformer_role', 'transformer'),
        'reporter': var('reporter_role', 'reporter'),
    }) }}
{%- endmacro %}

{#- The hooks that write shared catalog state (roles, grants, the quality tables) take this
    transaction-scoped advisory lock first, so two dbt invocations apply them one after the
    other: GRANTs on the same catalog rows at the same time fail with "tuple concurrently
    updated". The key is not `elt run`'s (loader/orchestrate/history.py, 7432001), which a
    session holds for a whole run while dbt builds. -#}
{% macro project_hook_lock() -%}
    pg_advisory_xact_lock(7432002)
{%- endmacro %}

{#- dbt runs the project hooks on `dbt source freshness` too (flag
    source_freshness_run_project_hooks, on by default since 1.10), where flags.WHICH is
    'freshness'. Freshness builds nothing, so roles and grants wait for a command that does
    (`elt run` starts freshness beside its build). -#}
{% macro hook_builds_relations() -%}
    {{ return(flags.WHICH not in ['freshness']) }}
{%- endmacro %}

{% macro create_roles() -%}
    {%- if not var('manage_roles', true) or not hook_builds_relations() -%}
        select 1
    {%- else -%}
        {%- set roles = role_names() -%}
        do $$
        begin
            perform {{ project_hook_lock() }};
            if (select rolsuper or rolcreaterole from pg_roles where rolname = current_user) then
                {%- for role in roles.values() %}
                if not exists (select from pg_roles where rolname = '{{ role }}') then
                    create role {{ adapter.quote(role) }} nologin;
                end if;
                {%- endfor %}
            end if;
        end
        $$
    {%- endif -%}
{%- endmacro %}

{% macro grant_role_privileges() -%}
    {%- if not var('manage_roles', true) or not hook_builds_relations() -%}
        select 1
    {%- else -%}
        {%- set roles = role_names() -%}
        {%- set raw_schemas = var('raw_schemas', ['raw_marketplace', 'raw_marketplace_staging']) -%}
        {%- set dbt_schemas = ['staging', 'intermediate', 'quarantine', 'marts', 'snapshots',
                               'reference', 'test_failures', target.schema] -%}
        do $$
        declare
            loader text := '{{ roles.loader }}';
            transformer text := '{{ roles.transformer }}';
            reporter text := '{{ roles.reporter }}';
            s text;
        begin
            perform {{ project_hook_lock() }};
            if (select count(*) from pg_roles
                where rolname in (loader, transformer, reporter)) < 3 then
                raise notice 'roles % % % missing: grants skipped', loader, transformer, reporter;
                return;
            end if;
            execute format('grant connect on database %I to %I, %I, %I',
                           current_database(), loader, transformer, reporter);
            -- the loader creates its raw schemas itself (dlt), so it may create schemas
            execute format('grant create on database %I to %I', current_database(), loader);
            foreach s in array array[{% for schema in raw_schemas %}'{{ schema }}'{{ ", " if not loop.last }}{% endfor %}] loop
                if exists (select from pg_namespace where nspname = s) then
                    execute format('grant usage, create on schema %I to %I', s, loader);
                    execute format('grant all on all tables in schema %I to %I', s, loader);
                    execute format('grant usage on schema %I to %I', s, transformer);
                    execute format('grant select on all tables in schema %I to %I', s, transformer);
                    execute format('revoke all on schema %I from %I', s, reporter);
                    execute format('revoke all on all tables in schema %I from %I', s, reporter);
                end if;
            end loop;
            foreach s in array array[{% for schema in dbt_schemas %}'{{ schema }}'{{ ", " if not loop.last }}{% endfor %}] loop
                if exists (select from pg_namespace where nspname = s) then
                    execute format('grant usage, create on schema %I to %I', s, transformer);
                    execute format('grant all on all tables in schema %I to %I', s, transformer);
                    execute format('revoke all on schema %I from %I', s, loader);
                    execute format('revoke all on all tables in schema %I from %I', s, loader);
                    if s = 'marts' then
                        execute format('grant usage on schema %I to %I', s, reporter);
                        execute format('grant select on all tables in schema %I to %I', s, reporter);
                    else
                        execute format('revoke all on schema %I from %I', s, reporter);
                        execute format('revoke all on all tables in schema %I from %I', s, reporter);
                    end if;
                end if;
            end loop;
        end
        $$
    {%- endif -%}
{%- endmacro %}
