-- The quality schema's tables that the loader writes: results of `elt report` (runs,
-- check_results) and the alerts sent (alert_log). Owned by these files, applied in order by
-- loader.schemas.ensure(conn, "quality"), which records each version in
-- quality.schema_migrations. This first version is idempotent: it brings up to date a
-- warehouse of the layout before versioning, keeping its rows; later versions run once.
-- Not here, on purpose: the tables dbt creates in this schema stay dbt's (dbt makes and
-- changes them with the project): quality.dbt_invocations and quality.dbt_results
-- (macros/quality/store_run_results.sql, the on-run-end hook), quality.mart_publications
-- (macros/publish.sql), and dbt's own models and tests in this schema.

create schema if not exists quality;

create table if not exists quality.runs (
    run_id       text primary key,
    started_at   timestamptz not null,
    finished_at  timestamptz,
    passed       integer,
    warned       integer,
    failed       integer,
    errored      integer,
    report_path  text
);
create table if not exists quality.check_results (
    run_id       text not null references quality.runs (run_id) on delete cascade,
    check_id     text not null,
    category     text not null,
    check_name   text not null,
    table_name   text,
    status       text not null,
    message      text,
    observed     double precision,
    threshold    double precision,
    failing_rows bigint,
    sample       jsonb,
    details      jsonb,
    primary key (run_id, check_id)
);
create table if not exists quality.alert_log (
    fingerprint text not null,
    channel     text not null,
    run_id      text not null,
    sent_at     timestamptz not null default now()
);
create index if not exists alert_log_fingerprint_idx
    on quality.alert_log (fingerprint, channel, sent_at desc);
