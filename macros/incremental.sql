{#- Helpers for the incremental intermediate layer (int_*_validated) and the facts.

    Every validated row carries _validated_at: when its verdict (quarantine_reason) or the
    load it came from last changed. A child re-validates the rows whose own load is newer
    than its newest _loaded_at, and the rows whose parent was validated after its newest
    _validated_at; a fact rebuilds the rows whose inputs were validated after its own
    newest _validated_at. So an increment touches what changed, and what changed with it.
    A validated model calls validated_rows, which calls the others; the facts call the
    helpers below it themselves. Every macro is documented in macros/_macros.yml. -#}

{#- The plumbing of a validated model (models/intermediate/marketplace/int_*_validated.sql),
    called as a block around its business rules, so the model reads as those rules:

        {% call validated_rows('orders', 'stg_marketplace__orders', key='order_id', ...) %}
        customers as (...),
        validated as (select orders.*, case ... end as quarantine_reason from orders ...)
        {% endcall %}

    It configures the model, opens the query with a CTE named `name` over `rows` (the staging
    model), lets the block add its CTEs, the last one `validated`, and stamps each row's
    _validated_at (kept while its _loaded_at, quarantine_reason and the `compared` columns
    stand). Incremental (the default), `name` holds only the rows to re-validate: those
    loaded since the newest _loaded_at here, those whose parent was re-validated since the
    newest _validated_at here or left (closed in its `snapshot`, or tombstoned in its
    `raw_table`), and, with `future_dated`, those set aside as dated in the future. After the
    insert, the rows whose key left `rows` are deleted (delete_missing_rows). A parent is
    {'on': column here, 'validated': its validated model, 'key': its key (default `on`),
    'snapshot' or 'raw_table': how a deleted one is known}. materialized='table' rebuilds in
    full (a verdict that depends on every row) and only stamps. -#}
{% macro validated_rows(name, rows, key, raw_table=none, parents=[], compared=[],
                        future_dated=false, materialized='incremental') -%}
    {%- set incremental = materialized == 'incremental' -%}
    {%- set indexes = [{'columns': [key], 'unique': true}] -%}
    {%- if incremental -%}
        {%- do indexes.append({'columns': ['_loaded_at']}) -%}
    {%- endif -%}
    {%- do indexes.append({'columns': ['_validated_at']}) -%}
    {%- if incremental -%}
        {%- for parent in parents -%}
            {%- do indexes.append({'columns': [parent.on]}) -%}
        {%- endfor -%}
        {{ config(
            materialized='incremental',
            incremental_strategy='delete+insert',
            tags=['incremental'],
            unique_key=key,
            on_schema_change='append_new_columns',
            indexes=indexes,
            post_hook=[
                "{{ delete_missing_rows(ref('" ~ rows ~ "'), '" ~ key ~ "', '"
                ~ raw_table ~ "') }}",
                "{{ index_quarantined_rows() }}",
            ],
        ) }}
    {%- else -%}
        {{ config(materialized=materialized, indexes=indexes) }}
    {%- endif -%}
    {#- what only an increment reads, declared to dbt at parse time (lineage, build order);
        a unit test gives its inputs and reads no tombstones -#}
    {%- for parent in parents -%}
        {%- do ref(parent.validated) -%}
        {%- if parent.snapshot -%}
            {%- do ref(parent.snapshot) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if incremental and model.resource_type != 'unit_test' -%}
        {%- do source('ops', 'raw_deletes') -%}
    {%- endif -%}
    {%- set previous = previous_build() if not incremental or is_incremental() else none -%}
with

{{ name }} as (
    select * from {{ ref(rows) }}
    {%- if incremental and previous is not none %}
        {#- one compile-time query for the cutoff, however often it is used below -#}
        {%- set cutoff = incremental_cutoff('_validated_at') %}
        {#- `key = any(array(...))`, not `key in (...)`: a condition PostgreSQL pushes into
            the view below and answers by index, where a semi-join would scan it whole #}
    where
        {{ key }} = any(
            array(
                select changed.{{ key }}
                from {{ ref(rows) }} as changed
                where changed._loaded_at > {{ incremental_cutoff() }}
                {%- for parent in parents %}
                union
                select built.{{ key }}
                from {{ previous }} as built
                inner join {{ ref(parent.validated) }} as parent
                    on built.{{ parent.on }} = parent.{{ parent.key or parent.on }}
                where parent._validated_at > {{ cutoff }}
                union
                {%- if parent.snapshot %}
                -- a deleted parent is gone from its validated table: its snapshot tells
                select built.{{ key }}
                from {{ previous }} as built
                where
                    built.{{ parent.on }} in (
                        {{ closed_since(parent.snapshot, parent.key or parent.on, cutoff) }}
                    )
                {%- else %}
                -- a parent that left raw (a repair by `elt reconcile --deep`) is gone from
                -- its validated table: its tombstone tells
                select built.{{ key }}
                from {{ previous }} as built
                where
                    built.{{ parent.on }}
                    = any(array({{ tombstoned_keys(parent.raw_table, cutoff) }}))
                {%- endif %}
                {%- endfor %}
                {%- if future_dated %}
                union
                -- a row dated in the future is checked again until its time comes
                select built.{{ key }}
                from {{ previous }} as built
                where built.quarantine_reason = 'date_in_future'
                {%- endif %}
            )
        )
    {%- endif %}
),

{{ caller() | trim }},

final as (
    select
        validated.*,
        case
            when
                previous._loaded_at = validated._loaded_at
                and not (previous.quarantine_reason is distinct from validated.quarantine_reason)
                {%- for column in compared %}
                and not (previous.{{ column }} is distinct from validated.{{ column }})
                {%- endfor %}
                then previous._validated_at
            else {{ validation_time() }}
        end as _validated_at
    from validated
    left join {{ previous_or_empty(previous, 'validated') }} as previous
        on validated.{{ key }} = previous.{{ key }}
)

select * from final
{%- endmacro %}

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
    {%- if execute and load_relation(source('ops', 'raw_deletes')) is not none -%}
        select tombstone.row_key from {{ source('ops', 'raw_deletes') }} as tombstone
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
    {%- if load_relation(source('ops', 'raw_deletes')) is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set found = run_query(
        "select (previous.built - interval '" ~ var('incremental_lookback') ~ "')::text, "
        ~ "exists (select from " ~ source('ops', 'raw_deletes')
        ~ " where table_name = '" ~ raw_table ~ "' "
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
