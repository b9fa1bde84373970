{#- Helpers for the incremental intermediate layer (int_*_validated) and the facts.

    Every validated row carries _validated_at: when its verdict (quarantine_reason) or the
    load it came from last changed. A child re-validates the rows whose own load is newer
    than its newest _loaded_at, and the rows whose parent was validated after its newest
    _validated_at; a fact rebuilds the rows whose inputs were validated after its own
    newest _validated_at. So an increment touches what changed, and what changed with it. -#}

{#- This invocation's validation time: one value for every row it writes. -#}
{% macro validation_time() -%}
    '{{ run_started_at.isoformat() }}'::timestamptz
{%- endmacro %}

{#- {{ this }} when it holds a previous build with _validated_at (else none: the first build,
    a full refresh, a unit test, or a table built before the column existed is computed in
    full). -#}
{% macro previous_build() -%}
    {%- if not execute or model.resource_type == 'unit_test' -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set relation = load_relation(this) -%}
    {%- if relation is none or flags.FULL_REFRESH -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set names = adapter.get_columns_in_relation(relation) | map(attribute='name') | list -%}
    {{ return(relation if '_validated_at' in names else none) }}
{%- endmacro %}

{#- What a validated model left-joins as `previous`: its previous build, or (on a first build)
    no rows shaped like `cte` plus _validated_at, so every row gets this invocation's time. -#}
{% macro previous_or_empty(previous, cte) -%}
    {%- if previous is not none -%}
        {{ previous }}
    {%- else -%}
        (select {{ cte }}.*, null::timestamptz as _validated_at from {{ cte }} where false)
    {%- endif -%}
{%- endmacro %}

{#- Post-hook: delete the rows whose key is gone from `relation` (hard-deleted in the source,
    or left the clean set). The loader leaves a tombstone in ops.raw_deletes for every key
    that leaves raw_table (a cdc delete, a repair by `elt reconcile --deep`), so an increment
    looks up only the keys tombstoned since this model's previous build, and deletes those
    not in `relation` (a key that came back stays). Without tombstones to go by (a first or
    full build, no ops.raw_deletes, a table the loader reloaded whole), the full anti-join
    runs, and only when the counts differ. -#}
{% macro delete_missing_rows(relation, key, raw_table) -%}
    {%- set cutoff = tombstone_cutoff(raw_table) -%}
    {%- if cutoff is not none -%}
        {#- `<> all(array(...))`, not `not exists`: an anti-join into the view would hash all of
            it; the array reads the few keys by index -#}
        {%- set tombstoned = tombstoned_keys(raw_table, cutoff) -%}
        delete from {{ this }} as target
        where
            target.{{ key }} = any(array({{ tombstoned }}))
            and target.{{ key }} <> all(
                array(
                    select kept.{{ key }} from {{ relation }} as kept
                    where kept.{{ key }} = any(array({{ tombstoned }}))
                )
            )
    {%- else -%}
        delete from {{ this }} as target
        where
            (select count(*) from {{ this }}) <> (select count(*) from {{ relation }})
            and not exists (
                select 1 from {{ relation }} as kept
                where kept.{{ key }} = target.{{ key }}
            )
    {%- endif -%}
{%- endmacro %}

{#- The keys that left raw_table after `cutoff` (a select of one column), from the loader's
    tombstones; none where there is no ops.raw_deletes (dbt run without the loader). -#}
{% macro tombstoned_keys(raw_table, cutoff) -%}
    {%- if execute and adapter.get_relation(this.database, 'ops', 'raw_deletes') is not none -%}
        select tombstone.row_key from ops.raw_deletes as tombstone
        where
            tombstone.table_name = '{{ raw_table }}'
            and tombstone.deleted_at > {{ cutoff }}
    {%- else -%}
        select null::bigint as row_key where false
    {%- endif -%}
{%- endmacro %}

{#- Since when this model must apply raw_table's tombstones: its previous build (the newest
    _validated_at before this invocation's) less the lookback, for loads that committed
    while it ran. None: go without them (see delete_missing_rows). Rendered when the
    post-hook runs, after the model's insert. -#}
{% macro tombstone_cutoff(raw_table) -%}
    {%- if not execute or flags.FULL_REFRESH or not raw_table -%}
        {{ return(none) }}
    {%- endif -%}
    {%- if adapter.get_relation(this.database, 'ops', 'raw_deletes') is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set found = run_query(
        "select (previous.built - interval '" ~ var('incremental_lookback') ~ "')::text, "
        ~ "exists (select from ops.raw_deletes where table_name = '" ~ raw_table ~ "' "
        ~ "and row_key is null and deleted_at > previous.built - interval '"
        ~ var('incremental_lookback') ~ "') "
        ~ "from (select max(_validated_at) as built from " ~ this
        ~ " where _validated_at < " ~ validation_time() ~ ") as previous"
    ) -%}
    {%- set built, reloaded = found.columns[0].values()[0], found.columns[1].values()[0] -%}
    {%- if built is none or reloaded -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return("'" ~ built ~ "'::timestamptz") }}
{%- endmacro %}

{#- Post-hook of the incremental validated tables: the quarantined rows, which the quarantine
    views read, by index. -#}
{% macro index_quarantined_rows() -%}
    create index if not exists {{ this.identifier }}__quarantined
    on {{ this }} (quarantine_reason) where quarantine_reason is not null
{%- endmacro %}

{#- Post-hook of every table the build writes: statistics for a table that has none yet (a
    fresh build), so the next model's planner knows its size; increments leave them to
    autovacuum, which the constant cutoffs above do not need. -#}
{% macro analyze_if_new() -%}
    {%- if config.get('materialized') in ('table', 'incremental', 'snapshot') -%}
        do $analyze$ begin
            if not exists (
                select from pg_stats
                where schemaname = '{{ this.schema }}' and tablename = '{{ this.identifier }}'
            ) then
                analyze {{ this }};
            end if;
        end $analyze$
    {%- endif -%}
{%- endmacro %}

{#- Keys of the snapshot `snapshot` (SCD2, hard deletes invalidated) whose version was closed
    after `cutoff` (this model's newest _validated_at): parents changed or deleted since. A deleted
    parent is gone from its validated table, so only its snapshot tells the children to
    re-validate (parent_not_found). -#}
{% macro closed_since(snapshot, key, cutoff) -%}
    select {{ key }} from {{ ref(snapshot) }} where dbt_valid_to > {{ cutoff }}
{%- endmacro %}

{#- Post-hook of the facts, before delete_missing_rows: delete the rows whose validated row was
    moved into quarantine since this table's previous build (by key), so that the counts match
    again and the full anti-join is left for hard deletes. Since its own previous build, not
    since this invocation: the marts have two copies (macros/publish.sql), and a copy one
    build behind must also drop what the build it missed quarantined. -#}
{% macro delete_requarantined_rows(validated, key) -%}
    {%- set since = previous_build_cutoff() -%}
    delete from {{ this }}
    where
        {{ key }} = any(
            array(
                select changed.{{ key }} from {{ validated }} as changed
                where
                    {% if since is not none -%}
                        changed._validated_at > {{ since }}
                    {%- else -%}
                        changed._validated_at >= {{ validation_time() }}
                    {%- endif %}
                    and changed.quarantine_reason is not null
            )
        )
{%- endmacro %}

{#- This table's newest _validated_at before this invocation's, less the lookback, as a
    literal: when its previous build ran. None on a first or full build, or without rows.
    Rendered when a post-hook runs, after the model's insert. -#}
{% macro previous_build_cutoff() -%}
    {%- if not execute or flags.FULL_REFRESH -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set found = run_query(
        "select (max(_validated_at) - interval '" ~ var('incremental_lookback') ~ "')::text "
        ~ "from " ~ this ~ " where _validated_at < " ~ validation_time()
    ) -%}
    {%- set built = found.columns[0].values()[0] -%}
    {{ return(none if built is none else "'" ~ built ~ "'::timestamptz") }}
{%- endmacro %}
