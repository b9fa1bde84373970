-- The ops schema: the loader's bookkeeping (run history, load reconciliation, tombstones,
-- dead letters, kept raw row counts). Owned by these files, applied in order by
-- loader.schemas.ensure(conn, "ops"), which records each version in ops.schema_migrations.
-- This first version is written to be idempotent: it brings up to date a warehouse of the
-- layout before versioning (tables made by `create table if not exists` scattered through the
-- loader, columns added later by `alter table ... add column if not exists`), keeping rows.
-- Later versions are plain DDL: each runs once.
-- Not here: dbt owns nothing in ops; the roles and grants on it are macros/roles.sql.

create schema if not exists ops;
comment on schema ops is 'marketplace-elt: the loader''s bookkeeping (DDL: loader/schemas/ops)';

-- run history (loader/orchestrate/history.py)
create table if not exists ops.pipeline_runs (
    run_id      text primary key,
    started_at  timestamptz not null default now(),
    finished_at timestamptz,
    status      text not null,
    duration_s  double precision,
    args        jsonb not null default '{}',
    error       text,
    host        text,
    pid         integer,
    summary     jsonb
);
create table if not exists ops.task_runs (
    run_id      text not null,
    task        text not null,
    table_names text[],
    attempt     integer not null,
    status      text not null,
    started_at  timestamptz not null,
    finished_at timestamptz,
    duration_s  double precision,
    rows        bigint,
    error       text
);
create index if not exists task_runs_task_idx on ops.task_runs (task, started_at desc);
create table if not exists ops.failed_tasks (
    failed_task_id  bigint generated always as identity primary key,
    run_id          text not null,
    task            text not null,
    inputs          jsonb not null,
    error           text not null,
    failed_at       timestamptz not null default now(),
    resolved_at     timestamptz,
    resolved_by_run text
);

-- source vs raw counts after every load (loader/extract/reconcile.py)
create table if not exists ops.load_reconciliation (
    load_id        text,
    table_name     text not null,
    mode           text not null,
    action         text not null,
    rows_extracted bigint not null,
    source_rows    bigint,
    raw_rows       bigint,
    matched        boolean,
    checked_at     timestamptz not null default now(),
    dead_letters   bigint not null default 0
);
alter table ops.load_reconciliation add column if not exists dead_letters bigint not null default 0;
create index if not exists load_reconciliation_table_idx
    on ops.load_reconciliation (table_name, checked_at desc);

-- tombstones: keys deleted from raw, for dbt's incremental deletes (macros/incremental.sql)
create table if not exists ops.raw_deletes (
    table_name  text not null,
    row_key     bigint,  -- null: the table was reloaded whole, any key may be gone
    load_id     text,
    reason      text not null,
    deleted_at  timestamptz not null
);
create index if not exists raw_deletes_table_idx on ops.raw_deletes (table_name, deleted_at);

-- key buckets that differed between source and raw (elt reconcile --deep)
create table if not exists ops.deep_reconciliation (
    table_name   text not null,
    bucket       bigint not null,
    key_from     bigint not null,
    key_to       bigint not null,
    source_rows  bigint not null,
    raw_rows     bigint not null,
    repaired     boolean not null,
    checked_at   timestamptz not null default now()
);

-- rows set aside instead of loaded (loader/extract/dead_letters.py)
create table if not exists ops.dead_letters (
    dead_letter_id bigint generated always as identity primary key,
    table_name     text not null,
    row_key        text,
    error          text not null,
    load_id        text not null,
    row_image      jsonb,
    created_at     timestamptz not null default now(),
    resolved_at    timestamptz,
    resolution     text,
    attempts       integer not null default 1
);
alter table ops.dead_letters add column if not exists resolved_at timestamptz;
alter table ops.dead_letters add column if not exists resolution text;
alter table ops.dead_letters add column if not exists attempts integer not null default 1;

-- exact raw row counts kept by statement triggers (loader/extract/row_counts.py)
create table if not exists ops.raw_row_counts (
    table_name  text primary key,  -- schema.table
    row_count   bigint not null,
    counted_at  timestamptz not null default now()  -- when count(*) last set it
);
create or replace function ops.elt_rows_inserted() returns trigger language plpgsql as $$
begin
    update ops.raw_row_counts set row_count = row_count + (select count(*) from new_rows)
    where table_name = tg_table_schema || '.' || tg_table_name;
    return null;
end $$;
create or replace function ops.elt_rows_deleted() returns trigger language plpgsql as $$
begin
    update ops.raw_row_counts set row_count = row_count - (select count(*) from old_rows)
    where table_name = tg_table_schema || '.' || tg_table_name;
    return null;
end $$;
create or replace function ops.elt_rows_truncated() returns trigger language plpgsql as $$
begin
    update ops.raw_row_counts set row_count = 0
    where table_name = tg_table_schema || '.' || tg_table_name;
    return null;
end $$;
