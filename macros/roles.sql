{#- Least-privilege roles, created and granted by the project (issue: roles and grants).
      loader      writes the raw schemas and its bookkeeping in ops (and may create schemas);
      transformer reads raw (and the loader's tombstones in ops), owns and writes the dbt
                  schemas and quality;
      reporter    reads the marts only: the views of schema marts (macros/publish.sql),
                  which read the published copy with their owner's rights; never the copies.
    What dbt can express is dbt's: the marts' `grants` config (dbt_project.yml) gives reporter
    select on what it reads; dbt applies it to the tables it builds, and the publish to the
    views of `marts` (the views are the publish's, not dbt's relations). The hooks here do
    what dbt's grants cannot: create the roles; schema privileges (USAGE, CREATE: dbt grants
    on relations only), so reporter reaches the schema `marts` and no other (the copies'
    tables carry the marts' grants too, out of its reach); the loader's schemas (raw, ops),
    which dbt does not build; default privileges, for the tables the loader and the
    transformer's members create between two runs; and ownership, which dbt cannot set.
    The roles are NOLOGIN groups: grant them to real login users (`grant reporter to bi_user`).
    Creating roles needs CREATEROLE; without it (a locked-down prod) creation is skipped, and so
    are the grants (a user that may not manage roles cannot grant on others' objects either).
    Set var manage_roles: false to leave roles and grants alone. -#}

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

{#- Grants, default privileges (tables created later, by this user or by a member of the
    role that writes the schema, are readable at once by the role that reads it: a raw table
    recreated by `elt load --full-refresh`, a mart rebuilt by a transformer user) and, run by
    a superuser, ownership: dbt replaces its relations on every build, which only their owner
    may, so the dbt schemas' relations go to transformer, and raw's and ops' to loader (a full
    refresh drops its tables, an upgrade of the ops DDL replaces its functions). -#}
{% macro grant_role_privileges() -%}
    {%- if not var('manage_roles', true) or not hook_builds_relations() -%}
        select 1
    {%- else -%}
        {%- set roles = role_names() -%}
        {%- set raw_schemas = var('raw_schemas', ['raw_marketplace', 'raw_marketplace_staging']) -%}
        {#- the schemas dbt writes: its nodes' (models, seeds, snapshots, stored test
            failures, elementary's), the marts' views and copies (macros/publish.sql), the
            target's own, and quality (macros/quality) -#}
        {%- set marts_copies = marts_schemas() -%}
        {%- set dbt_schemas = ['quality', generate_schema_name(none, none) | trim] -%}
        {%- set node_schemas = graph.nodes.values() | map(attribute='schema') | list
            if execute else [] -%}
        {%- for schema in node_schemas + marts_copies.values() | list
            if schema not in dbt_schemas -%}
            {%- do dbt_schemas.append(schema) -%}
        {%- endfor -%}
        {%- set marts = marts_copies.views -%}
        do $$
        declare
            loader text := '{{ roles.loader }}';
            transformer text := '{{ roles.transformer }}';
            reporter text := '{{ roles.reporter }}';
            raw_schemas text[] := array[{% for s in raw_schemas %}'{{ s }}'{{ ", " if not loop.last }}{% endfor %}];
            dbt_schemas text[] := array[{% for s in dbt_schemas %}'{{ s }}'{{ ", " if not loop.last }}{% endfor %}];
            is_superuser boolean;
            s text;
            writer text;
            writer_id oid;
            creator text;
            obj record;
        begin
            perform {{ project_hook_lock() }};
            if (select count(*) from pg_roles
                where rolname in (loader, transformer, reporter)) < 3 then
                raise notice 'roles % % % missing: grants skipped', loader, transformer, reporter;
                return;
            end if;
            select rolsuper into is_superuser from pg_roles where rolname = current_user;
            if not (select rolsuper or rolcreaterole from pg_roles where rolname = current_user)
            then
                raise notice '% may not manage roles: grants skipped (a DBA applies them)',
                    current_user;
                return;
            end if;
            execute format('grant connect on database %I to %I, %I, %I',
                           current_database(), loader, transformer, reporter);
            -- each writer creates its own schemas: dlt the raw ones and ops, dbt its schemas
            execute format('grant create on database %I to %I, %I',
                           current_database(), loader, transformer);

            foreach s in array raw_schemas || array['ops'] || dbt_schemas loop
                continue when not exists (select from pg_namespace where nspname = s);
                writer := case when s = any(dbt_schemas) then transformer else loader end;
                select oid into writer_id from pg_roles where rolname = writer;

                if is_superuser then
                    if (select nspowner <> writer_id from pg_namespace
                        where nspname = s) then
                        execute format('alter schema %I owner to %I', s, writer);
                    end if;
                    -- indexes and owned sequences follow their table
                    for obj in
                        select c.relname, c.relkind from pg_class c
                        where c.relnamespace = to_regnamespace(s)
                            and c.relkind in ('r', 'p', 'v', 'm', 'f')
                            and c.relowner <> writer_id
                    loop
                        execute format('alter %s %I.%I owner to %I',
                            case obj.relkind when 'v' then 'view'
                                when 'm' then 'materialized view'
                                when 'f' then 'foreign table' else 'table' end,
                            s, obj.relname, writer);
                    end loop;
                    for obj in
                        select p.oid::regprocedure as fn from pg_proc p
                        where p.pronamespace = to_regnamespace(s)
                            and p.proowner <> writer_id
                    loop
                        execute format('alter routine %s owner to %I', obj.fn, writer);
                    end loop;
                end if;

                execute format('grant usage, create on schema %I to %I', s, writer);
                execute format('grant all on all tables in schema %I to %I', s, writer);
                execute format('grant all on all sequences in schema %I to %I', s, writer);
                if s = any(dbt_schemas) then
                    execute format('revoke all on schema %I from %I', s, loader);
                    execute format('revoke all on all tables in schema %I from %I', s, loader);
                else
                    -- raw, and the loader's tombstones in ops, are the transformer's input
                    execute format('grant usage on schema %I to %I', s, transformer);
                    execute format('grant select on all tables in schema %I to %I',
                                   s, transformer);
                end if;
                -- reporter's select on the marts is dbt's `grants` config (see above)
                if s = '{{ marts }}' then
                    execute format('grant usage on schema %I to %I', s, reporter);
                else
                    execute format('revoke all on schema %I from %I', s, reporter);
                    if s <> all(array['{{ marts_copies.build }}', '{{ marts_copies.live }}'])
                    then
                        execute format('revoke all on all tables in schema %I from %I',
                                       s, reporter);
                    end if;
                end if;

                -- tables created later: by this user, the writer role or one of its members
                -- (default privileges go by the creating role; login users create as themselves)
                for creator in
                    select current_user::text
                    union
                    select r.rolname::text from pg_roles r
                    where r.rolname = writer and pg_has_role(current_user, r.oid, 'usage')
                    union
                    select r.rolname::text from pg_auth_members m
                    inner join pg_roles r on m.member = r.oid
                    where m.roleid = writer_id
                        and pg_has_role(current_user, r.oid, 'usage')
                loop
                    execute format(
                        'alter default privileges for role %I in schema %I '
                        'grant all on tables to %I', creator, s, writer);
                    if s <> all(dbt_schemas) then
                        execute format(
                            'alter default privileges for role %I in schema %I '
                            'grant select on tables to %I', creator, s, transformer);
                    end if;
                end loop;
            end loop;
        end
        $$
    {%- endif -%}
{%- endmacro %}
