"""The dlt loader against a real source: exactly once, nothing lost, late data, crashes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from loader.config import PROJECT_ROOT, load_settings
from loader.extract import reconcile, repair
from loader.extract.pipeline import make_pipeline, run_load, table_states
from loader.extract.plan import LoadRequest
from loader.extract.results import LoadError
from loader.extract.tables import TableConfigError, load_config
from loader.source import simulator
from loader.source.simulator import SimConfig
from tests.conftest import (
    SIM_END,
    TEST_DEFAULTS,
    create_database,
    create_warehouse,
    offline_packages,
    query,
)

TABLES = simulator.TABLES


def make_env(elt_env: dict[str, str], home: Path, name: str, **extra: str) -> dict[str, str]:
    port = elt_env["ELT_PG_PORT"]
    return {
        "ELT_HOME": str(home),
        "ELT_SOURCE_URL": f"postgresql://postgres@127.0.0.1:{port}/{name}_src",
        "ELT_WAREHOUSE_URL": f"postgresql://postgres@127.0.0.1:{port}/{name}_wh",
        **TEST_DEFAULTS,
        **offline_packages(),
        **extra,
    }


def fresh(settings_any, elt_env, tmp_path, name: str, scale: float = 0.005, **extra):
    """A new source (simulated) and an empty warehouse (but for elementary's models, see
    create_warehouse), each in its own database."""
    env = make_env(elt_env, tmp_path / name, name, **extra)
    create_database(settings_any, f"{name}_src")
    create_warehouse(settings_any, f"{name}_wh")
    s = load_settings(env)
    simulator.init(s.source, SimConfig(scale=scale, seed=11, end_date=SIM_END))
    return s, env


def custom_source(settings_any, elt_env, tmp_path, name: str, tables_yml: str, ddl: str):
    """A hand-made source (`ddl`) listed by its own `tables_yml`, and an empty warehouse."""
    env = make_env(elt_env, tmp_path, name, ELT_TABLES_CONFIG=str(tmp_path / "tables.yml"))
    create_database(settings_any, f"{name}_src")
    create_database(settings_any, f"{name}_wh")
    (tmp_path / "tables.yml").write_text(tables_yml)
    s = load_settings(env)
    _execute(s.source, ddl)
    return s, env


def assert_raw_equals_source(s, config) -> None:
    for spec in config.tables.values():
        diffs = reconcile.compare(s, config, spec, width=1000)
        assert diffs == [], f"{spec.name} differs from the source: {diffs[:3]}"
        src = query(s.source, f"select count(*) from {config.source_schema}.{spec.name}")
        raw = query(
            s.warehouse,
            f"select count(*), count(distinct {spec.primary_key[0]}) "
            f"from {config.dataset}.{spec.name}",
        )
        assert raw[0] == (src[0][0], src[0][0]), f"{spec.name}: counts or duplicate keys"


def _execute(endpoint, statement: str) -> None:
    import psycopg2

    conn = psycopg2.connect(endpoint.dsn)
    with conn, conn.cursor() as cur:
        cur.execute(statement)
    conn.close()


def commit_a_copy_of_row_one(s, table: str, key: str, changes: str = "") -> None:
    """Commit in the source a copy of the row whose key is 1, under the next free key."""
    _execute(
        s.source,
        f"insert into marketplace.{table} select (jsonb_populate_record("
        f"null::marketplace.{table}, to_jsonb(t) || jsonb_build_object("
        f"'{key}', (select max({key}) + 1 from marketplace.{table}){changes}))).* "
        f"from marketplace.{table} t where {key} = 1",
    )


@pytest.fixture(scope="module")
def loaded(settings, elt_env, tmp_path_factory):
    s, env = fresh(settings, elt_env, tmp_path_factory.mktemp("ld"), "ld")
    config = load_config(s.tables_config)
    first = run_load(s, config)
    return s, env, config, first


def test_initial_load_copies_every_table_faithfully(loaded):
    s, _, config, first = loaded
    assert {r.action for r in first.tables.values()} == {"initial"}
    assert all(r.reconciled for r in first.tables.values())
    assert_raw_equals_source(s, config)
    columns = {
        r[0]
        for r in query(
            s.warehouse,
            """select column_name from
        information_schema.columns where table_schema = 'raw_marketplace'
        and table_name = 'orders'""",
        )
    }
    assert {"_dlt_load_id", "_loaded_at", "order_id", "total_amount"} <= columns
    idx = query(
        s.warehouse, "select indexdef from pg_indexes where indexname = 'orders__merge_key'"
    )
    assert "UNIQUE" in idx[0][0], "the merge key is indexed"


def test_types_are_carried_over(loaded):
    s, *_ = loaded
    types = dict(
        query(
            s.warehouse,
            """select column_name, data_type from
        information_schema.columns where table_schema = 'raw_marketplace'
        and table_name = 'payments'""",
        )
    )
    assert types["amount"] == "numeric"
    assert types["paid_at"] == "timestamp with time zone"
    assert types["payment_id"] == "bigint"
    items = dict(query(s.warehouse, """select column_name, data_type from
        information_schema.columns where table_schema = 'raw_marketplace'
        and table_name = 'order_items'"""))
    assert items["quantity"] == "integer", "integer widths are kept"


def test_a_second_load_with_no_change_changes_nothing(loaded):
    s, _, config, _ = loaded
    run_load(s, config)  # settle whatever the module's earlier tests left
    before = query(s.warehouse, "select count(*), max(_dlt_load_id) from raw_marketplace.orders")
    again = run_load(s, config)
    assert again.rows_extracted == 0
    after = query(s.warehouse, "select count(*), max(_dlt_load_id) from raw_marketplace.orders")
    assert before == after


def test_increments_after_three_days_leave_raw_equal_to_source(loaded):
    s, _, config, _ = loaded
    days = simulator.advance(s.source, 3)
    result = run_load(s, config)
    assert {r.action for r in result.tables.values()} == {"increment"}
    # orders the simulator writes with a clock three hours behind come with the same load
    # (in the window, or found behind it by the count scan: test_faults.py)
    assert all(r.reconciled for r in result.tables.values())
    total = sum(simulator.counts(s.source).values())
    assert 0 < result.rows_extracted < total / 5, "an increment reads only what changed"
    deleted = sum(d["retracted_bids"] for d in days)
    assert deleted > 0
    # every key a cdc delete took out of raw leaves a tombstone for dbt (ops.raw_deletes)
    tombstoned = query(
        s.warehouse,
        "select count(distinct row_key), count(*) filter (where exists (select from "
        "raw_marketplace.bids b where b.bid_id = d.row_key)) from ops.raw_deletes d "
        "where table_name = 'bids' and load_id = %s",
        (result.load_id,),
    )[0]
    assert tombstoned == (deleted, 0), f"{tombstoned} tombstones for {deleted} retracted bids"
    # nothing is left for the deep reconciliation to find
    diffs = [d for spec in config.tables.values() for d in reconcile.compare(s, config, spec)]
    assert diffs == []
    assert_raw_equals_source(s, config)
    # rows deleted from raw by hand: deep reconciliation finds and repairs them
    _execute(s.warehouse, "delete from raw_marketplace.orders where order_id in (3, 4)")
    found = repair.deep_reconcile(s, config)
    assert [d.table for d in found] == ["orders"]
    assert_raw_equals_source(s, config)
    repaired = query(
        s.warehouse,
        "select count(*) from ops.raw_deletes where reason = 'reconcile repair' and exists "
        "(select from raw_marketplace.orders o where o.order_id = row_key)",
    )
    assert repaired == [(0,)], "a repair tombstones only keys it removed from raw"
    assert repair.deep_reconcile(s, config) == []
    assert all(r.reconciled for r in run_load(s, config).tables.values())
    logged = query(s.warehouse, "select count(*) from ops.deep_reconciliation")[0][0]
    assert logged == len(found)


def test_watermarks_live_in_dlt_state(loaded):
    s, _, config, _ = loaded
    states = table_states(make_pipeline(s, config))
    assert set(states) == set(TABLES)
    assert states["orders"]["watermark"] and states["customers"]["cdc_txid"]
    stored = query(s.warehouse, "select count(*) from raw_marketplace._dlt_pipeline_state")
    assert stored[0][0] > 0, "state is committed to the warehouse with the load"


def test_a_transaction_held_open_across_a_load_still_arrives(loaded):
    s, _, config, _ = loaded
    import psycopg2

    held = psycopg2.connect(s.source.dsn)
    cur = held.cursor()
    # updated_at = now() = this transaction's start: older than anything loaded next
    cur.execute("update marketplace.orders set status = 'held-open' where order_id = 3")
    cur.execute("update marketplace.customers set city = 'Held Open' where customer_id = 5")
    time.sleep(1.0)
    simulator.advance(s.source, 1)  # later, committed changes move the max cursor forward
    run_load(s, config)
    assert query(s.warehouse, "select status from raw_marketplace.orders where order_id = 3") != [
        ("held-open",)
    ]
    held.commit()
    held.close()
    run_load(s, config)
    assert query(s.warehouse, "select status from raw_marketplace.orders where order_id = 3") == [
        ("held-open",)
    ]
    assert query(
        s.warehouse, "select city from raw_marketplace.customers where customer_id = 5"
    ) == [("Held Open",)]


def test_the_source_count_is_taken_in_the_snapshot_the_rows_came_from(loaded, monkeypatch):
    """An increment counts the source while dlt loads, after the export: a row committed in
    between must not be counted (raw cannot have it yet), and the next load brings it."""

    from loader.extract import export

    s, _, config, _ = loaded
    run_load(s, config, LoadRequest(["customers"]))  # settle what earlier tests left
    count_in_snapshot = export._count_and_close

    def commit_a_customer_then_count(conn, statement, params):
        commit_a_copy_of_row_one(s, "customers", "customer_id", ", 'email', 'between-' || t.email")
        return count_in_snapshot(conn, statement, params)

    monkeypatch.setattr(export, "_count_and_close", commit_a_customer_then_count)
    during = run_load(s, config, LoadRequest(["customers"])).tables["customers"]
    monkeypatch.undo()
    assert during.action == "increment" and during.reconciled, (
        f"source {during.source_rows} vs raw {during.raw_rows}"
    )
    after = run_load(s, config, LoadRequest(["customers"])).tables["customers"]
    assert after.rows_extracted == 1 and after.reconciled
    assert after.raw_rows == during.raw_rows + 1


def test_backfill_reextracts_a_window_without_moving_the_watermark(loaded):
    s, _, config, _ = loaded
    before = table_states(make_pipeline(s, config))["orders"]["watermark"]
    query_delete = "delete from raw_marketplace.orders where order_id between 1 and 50"
    query(s.warehouse, query_delete)  # rolled back by the helper: do it for real below
    import psycopg2

    conn = psycopg2.connect(s.warehouse.dsn)
    with conn, conn.cursor() as cur:
        cur.execute("delete from raw_marketplace.orders where order_id between 1 and 50")
    conn.close()
    end = datetime.now(UTC) + timedelta(minutes=1)
    result = run_load(
        s, config, LoadRequest(["orders"], backfill_window=(datetime(2000, 1, 1, tzinfo=UTC), end))
    )
    assert result.tables["orders"].action == "backfill"
    assert table_states(make_pipeline(s, config))["orders"]["watermark"] == before
    assert_raw_equals_source(s, config)


def test_full_refresh_reloads_a_table_from_scratch(loaded):
    s, _, config, _ = loaded
    result = run_load(s, config, LoadRequest(["bids"], full_refresh=True))
    assert result.tables["bids"].action == "full"
    assert set(result.tables) == {"bids"}
    assert_raw_equals_source(s, config)
    # any key may be gone after a reload: one null tombstone sends dbt to its full anti-join
    marker = query(
        s.warehouse,
        "select reason from ops.raw_deletes where table_name = 'bids' and load_id = %s "
        "and row_key is null",
        (result.load_id,),
    )
    assert marker == [("full load",)]


@pytest.mark.parametrize("phase", ["extract", "normalize", "load"])
def test_sigkill_in_any_phase_then_rerun_leaves_raw_equal_to_source(
    settings, elt_env, tmp_path, phase
):
    s, env = fresh(settings, elt_env, tmp_path, f"crash_{phase}", scale=0.003)
    config = load_config(s.tables_config)
    run_load(s, config)
    simulator.advance(s.source, 2)
    crashed = subprocess.run(
        [sys.executable, "-m", "tests.integration.crash_load", phase],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert crashed.returncode == -9, crashed.stderr[-2000:]
    run_load(s, config)
    assert_raw_equals_source(s, config)
    again = run_load(s, config)
    assert again.rows_extracted == 0


def test_loader_works_on_an_unrelated_schema(settings, elt_env, tmp_path):
    name = "other"
    env = make_env(elt_env, tmp_path, name, ELT_TABLES_CONFIG=str(tmp_path / "tables.yml"))
    create_database(settings, f"{name}_src")
    create_database(settings, f"{name}_wh")
    (tmp_path / "tables.yml").write_text(
        "source_schema: library\ndataset: raw_library\n"
        "tables:\n"
        "  books:\n    primary_key: isbn_id\n    mode: timestamp\n    cursor: changed\n"
        "  genres:\n    primary_key: [genre_id]\n    mode: full\n"
    )
    s = load_settings(env)
    import psycopg2

    conn = psycopg2.connect(s.source.dsn)
    with conn, conn.cursor() as cur:
        cur.execute("""
            create schema library;
            create table library.genres (genre_id int primary key, label varchar(40));
            create table library.books (isbn_id bigint primary key, title text,
                price numeric(8,3), genre_id int references library.genres, in_print boolean,
                changed timestamp without time zone not null default now());
            insert into library.genres values (1, 'poetry'), (2, 'crime');
            insert into library.books (isbn_id, title, price, genre_id, in_print)
            select g, 'Book ' || g, g * 1.125, 1 + g % 2, g % 3 = 0
            from generate_series(1, 500) g;
            update library.books set title = '' where isbn_id = 1;
            update library.books set title = null where isbn_id = 2;
        """)
    config = load_config(s.tables_config)
    run_load(s, config)
    with conn, conn.cursor() as cur:
        cur.execute("update library.books set title = 'Changed' where isbn_id <= 10")
        cur.execute("insert into library.genres values (3, 'drama')")
    conn.close()
    result = run_load(s, config)
    assert result.tables["books"].rows_extracted == 10
    assert result.tables["genres"].action == "full"
    assert_raw_equals_source(s, config)
    assert query(s.warehouse, "select price from raw_library.books where isbn_id = 3") == [
        (__import__("decimal").Decimal("3.375"),)
    ]


def test_schema_drift_new_column_arrives_type_change_is_refused(settings, elt_env, tmp_path):
    s, env = fresh(settings, elt_env, tmp_path, "drift", scale=0.002)
    config = load_config(s.tables_config)
    run_load(s, config)
    import psycopg2

    conn = psycopg2.connect(s.source.dsn)
    with conn, conn.cursor() as cur:
        cur.execute("alter table marketplace.products add column color text")
        cur.execute("update marketplace.products set color = 'red' where product_id = 1")
    result = run_load(s, config)
    assert any("new column color" in d for d in result.tables["products"].drift)
    assert query(
        s.warehouse, "select color from raw_marketplace.products where product_id = 1"
    ) == [("red",)]
    with conn, conn.cursor() as cur:
        cur.execute("alter table marketplace.orders alter column total_amount type text")
        cur.execute("update marketplace.orders set total_amount = 'n/a' where order_id = 1")
    conn.close()
    before = query(s.warehouse, "select total_amount from raw_marketplace.orders where order_id=1")
    with pytest.raises(LoadError, match="orders: column total_amount changed type"):
        run_load(s, config)
    after = query(s.warehouse, "select total_amount from raw_marketplace.orders where order_id=1")
    assert before == after, "the data already in raw is untouched"


@pytest.mark.parametrize(
    "text, message",
    [
        ("tables: {}", "no tables listed"),
        ("tables:\n  t: {mode: timestamp}", "primary_key is required"),
        ("tables:\n  t: {primary_key: id, mode: sideways}", "mode 'sideways'"),
        ("tables:\n  t: {primary_key: id, mode: timestamp}", "needs a cursor"),
        ("tables:\n  t: {primary_key: id, mode: cdc}", "needs `cdc: table:`"),
        ("tables:\n  t: {primary_key: id, mode: full, lag: soon}", "lag 'soon'"),
        ("tables: [", "not valid YAML"),
    ],
)
def test_bad_table_config_is_explained(tmp_path, text, message):
    path = tmp_path / "tables.yml"
    path.write_text(text)
    with pytest.raises(TableConfigError, match=message):
        load_config(path)


def test_unknown_table_is_named(loaded):
    _, _, config, _ = loaded
    with pytest.raises(TableConfigError, match="unknown table.*nope"):
        config.select(["nope"])


def readme_dlt_commands() -> tuple[list[str], str]:
    """The README's dlt CLI lines, with .venv/bin/ pointing at this interpreter's, and its
    DLT_DATA_DIR export."""
    text = (PROJECT_ROOT / "README.md").read_text()
    bin_dir = f"{Path(sys.executable).parent}/"
    lines = [
        line.replace(".venv/bin/", bin_dir, 1)
        for line in text.splitlines()
        if line.startswith(".venv/bin/dlt pipeline")
    ]
    export = re.search(r"`(export DLT_DATA_DIR=[^`]+)`", text)
    assert export, "README no longer says how to set DLT_DATA_DIR"
    return lines, export.group(1)


def test_status_and_dlt_cli_see_the_pipeline(loaded):
    """The README's dlt commands work as written from the project root, wherever ELT_HOME
    puts the pipeline (here a temporary directory, not .elt)."""
    s, env, config, _ = loaded
    from loader.extract.status import loader_status

    rows = {r.table: r for r in loader_status(s, config)}
    assert rows["orders"].mode == "timestamp" and rows["orders"].watermark
    assert rows["orders"].rows_in_raw == rows["orders"].source_rows
    assert env["ELT_HOME"] != str(PROJECT_ROOT / ".elt")
    shell_env = {k: v for k, v in os.environ.items() if k != "DLT_DATA_DIR"} | env
    commands, export = readme_dlt_commands()
    assert [c.rsplit(" ", 1)[-1] for c in commands] == ["info", "trace"]

    def run(command: str) -> str:
        done = subprocess.run(["bash", "-c", command], cwd=PROJECT_ROOT, capture_output=True,
                              text=True, env=shell_env, timeout=120)
        assert done.returncode == 0, f"{command}:\n{done.stdout}{done.stderr}"
        return done.stdout

    info, trace = (run(c) for c in commands)
    assert f"in {s.dlt_dir / 'pipelines'}" in info  # this run's pipeline, not one in .elt
    assert "raw_marketplace" in info
    assert "Step load COMPLETED" in trace
    # dlt's own variable instead of --pipelines-dir
    dlt = Path(sys.executable).with_name("dlt")
    info = run(f"{export}; {dlt} pipeline marketplace info")
    assert f"in {s.dlt_dir / 'pipelines'}" in info and "raw_marketplace" in info
    assert "marketplace" in run(f"{export}; {dlt} pipeline --list-pipelines")


def test_threads_do_not_break_the_state(loaded):
    # resources are extracted in parallel threads; each table's state stays its own
    s, _, config, _ = loaded
    states = table_states(make_pipeline(s, config))
    assert all(states[t]["mode"] == config.tables[t].mode for t in TABLES)
    assert threading.active_count() >= 1


def test_rows_the_warehouse_cannot_hold_go_to_dead_letters(settings, elt_env, tmp_path):
    import psycopg2

    port = elt_env["ELT_PG_PORT"]
    admin = psycopg2.connect(settings.warehouse.with_database("postgres").dsn)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("drop database if exists dl_src with (force)")
        # a legacy source that stores bytes without checking their encoding
        cur.execute("create database dl_src with encoding 'SQL_ASCII' lc_collate 'C' "
                    "lc_ctype 'C' template template0")
    admin.close()
    create_database(settings, "dl_wh")
    (tmp_path / "tables.yml").write_text(
        "source_schema: legacy\ndataset: raw_legacy\ntables:\n"
        "  notes:\n    primary_key: note_id\n    mode: timestamp\n    cursor: changed_at\n"
    )
    env = {
        "ELT_HOME": str(tmp_path),
        "ELT_SOURCE_URL": f"postgresql://postgres@127.0.0.1:{port}/dl_src",
        "ELT_WAREHOUSE_URL": f"postgresql://postgres@127.0.0.1:{port}/dl_wh",
        "ELT_TABLES_CONFIG": str(tmp_path / "tables.yml"),
    }
    s = load_settings(env)
    conn = psycopg2.connect(s.source.dsn)
    with conn, conn.cursor() as cur:
        cur.execute("""
            create schema legacy;
            create table legacy.notes (note_id bigint primary key, body text,
                changed_at timestamptz not null default now());
            insert into legacy.notes (note_id, body) select g, 'note ' || g
            from generate_series(1, 100) g;
            update legacy.notes set body = E'caf\\xe9 in latin-1' where note_id = 7;
        """)
    config = load_config(s.tables_config)
    result = run_load(s, config)
    notes = result.tables["notes"]
    assert notes.dead_letters == 1 and result.dead_letters == 1
    assert notes.reconciled is False, "a dead letter is a mismatch: reported, not hidden"
    assert query(s.warehouse, "select count(*) from raw_legacy.notes")[0][0] == 99
    dead = query(s.warehouse, "select table_name, row_key, error, load_id from ops.dead_letters")
    assert dead[0][:2] == ("notes", "7")
    assert "invalid byte sequence" in dead[0][2]
    assert dead[0][3] == result.load_id
    with conn, conn.cursor() as cur:
        cur.execute("update legacy.notes set body = 'cafe, fixed' where note_id = 7")
    conn.close()
    again = run_load(s, config)
    assert again.tables["notes"].reconciled and again.dead_letters == 0
    assert query(s.warehouse, "select body from raw_legacy.notes where note_id = 7") == \
        [("cafe, fixed",)]


def test_a_bulk_export_reads_the_snapshot_its_watermark_came_from(loaded, monkeypatch):
    """A full load exports through psql, which joins the snapshot the loader read the table's
    position in: a row committed in between is neither exported nor counted, and the next
    increment brings it."""

    from loader.extract import export

    s, _, config, _ = loaded
    copy_in_snapshot, calls = export._copy_out_psql, []

    def commit_a_product_then_copy(*args):
        commit_a_copy_of_row_one(s, "products", "product_id")
        calls.append(args)
        return copy_in_snapshot(*args)

    monkeypatch.setattr(export, "_copy_out_psql", commit_a_product_then_copy)
    during = run_load(s, config, LoadRequest(["products"], full_refresh=True)).tables["products"]
    monkeypatch.undo()
    assert len(calls) == 1, "the full load did not export through psql"
    assert during.action == "full" and during.reconciled, (
        f"source {during.source_rows} vs raw {during.raw_rows}"
    )
    after = run_load(s, config, LoadRequest(["products"])).tables["products"]
    assert after.rows_extracted == 1 and after.reconciled
    assert after.raw_rows == during.raw_rows + 1
    assert_raw_equals_source(s, config)


def test_without_psql_a_bulk_export_runs_in_process(loaded, monkeypatch):
    from loader import warehouse

    s, _, config, _ = loaded
    monkeypatch.setattr(warehouse, "client_program", lambda name: None)
    result = run_load(s, config, LoadRequest(["products"], full_refresh=True)).tables["products"]
    assert result.action == "full" and result.reconciled and result.rows_extracted > 0
    assert_raw_equals_source(s, config)


def test_a_failed_psql_export_says_why_and_the_rerun_repairs(loaded, monkeypatch, tmp_path):
    from loader import warehouse

    s, _, config, _ = loaded
    broken = tmp_path / "psql"
    broken.write_text("#!/bin/sh\necho 'psql: error: connection refused' >&2\nexit 2\n")
    broken.chmod(0o755)
    monkeypatch.setattr(warehouse, "client_program", lambda name: broken)
    before = query(s.warehouse, "select count(*) from raw_marketplace.products")
    with pytest.raises(LoadError, match=r"export through psql failed \(exit 2\).*refused"):
        run_load(s, config, LoadRequest(["products"], full_refresh=True))
    monkeypatch.undo()
    # the refresh drops the table only once extracted: raw is as it was
    assert query(s.warehouse, "select count(*) from raw_marketplace.products") == before
    result = run_load(s, config, LoadRequest(["products"])).tables["products"]
    assert result.reconciled
    assert_raw_equals_source(s, config)


def test_a_bulk_load_into_empty_tables_is_counted_by_its_copy(
    settings, elt_env, tmp_path, monkeypatch
):
    """Large files (every file here) are loaded with TRUNCATE + COPY FREEZE in one
    transaction: the COPY's count is the raw count, the partial `_loaded_at` index is there,
    and raw still equals the source."""
    from loader.extract import binary_copy, row_counts

    monkeypatch.setattr(binary_copy, "FREEZE_MIN_BYTES", 0)
    set_up, counted = row_counts.set_up, {}

    def record_how_counted(cur, dataset, table, rows=None):
        counted[table] = "copy" if rows is not None else "count(*)"
        return set_up(cur, dataset, table, rows)

    monkeypatch.setattr(row_counts, "set_up", record_how_counted)
    s, _ = fresh(settings, elt_env, tmp_path, "fz")
    config = load_config(s.tables_config)
    result = run_load(s, config)
    assert counted == dict.fromkeys(TABLES, "copy"), counted
    kept = dict(query(s.warehouse, "select table_name, row_count from ops.raw_row_counts"))
    assert {t: kept.get(f"raw_marketplace.{t}") for t in TABLES} == {
        t: r.raw_rows for t, r in result.tables.items()
    }, "the COPY's transaction sets the trigger-kept count"
    assert all(r.reconciled for r in result.tables.values()), {
        t: (r.source_rows, r.raw_rows) for t, r in result.tables.items()
    }
    assert_raw_equals_source(s, config)
    partial = query(
        s.warehouse,
        "select count(*) from pg_indexes where schemaname = 'raw_marketplace' "
        "and indexname like '%%__loaded_at' and indexdef like '%%WHERE (_loaded_at >%%'",
    )
    assert partial == [(len(TABLES),)]


def test_raw_counts_kept_by_triggers_follow_every_write(settings, elt_env, tmp_path):
    """Raw counts come from statement triggers, not scans: they still see rows deleted by
    hand (the next load reports the mismatch), a repair, a TRUNCATE, and triggers disabled
    by hand send the loader back to count(*)."""
    from loader.extract.repair import deep_reconcile

    s, _ = fresh(settings, elt_env, tmp_path, "rc")
    config = load_config(s.tables_config)
    run_load(s, config)
    simulator.advance(s.source, 1)
    day = run_load(s, config)
    assert all(r.reconciled for r in day.tables.values())
    kept = dict(query(s.warehouse, "select table_name, row_count from ops.raw_row_counts"))
    for table in TABLES:
        actual = query(s.warehouse, f"select count(*) from raw_marketplace.{table}")[0][0]
        assert kept[f"raw_marketplace.{table}"] == actual, table

    _execute(s.warehouse, "delete from raw_marketplace.orders where order_id <= 7")
    hand = run_load(s, config, LoadRequest(["orders"])).tables["orders"]
    assert hand.reconciled is False and hand.raw_rows == hand.source_rows - 7
    deep_reconcile(s, config, ["orders"], width=1000)
    assert run_load(s, config, LoadRequest(["orders"])).tables["orders"].reconciled

    _execute(s.warehouse, "alter table raw_marketplace.orders disable trigger elt_rows_deleted")
    _execute(s.warehouse, "delete from raw_marketplace.orders where order_id <= 3")
    recount = run_load(s, config, LoadRequest(["orders"])).tables["orders"]
    assert recount.raw_rows == recount.source_rows - 3, "disabled triggers: count(*) again"
    enabled = query(
        s.warehouse,
        "select count(*) from pg_trigger where tgrelid = 'raw_marketplace.orders'::regclass "
        "and tgname like 'elt_rows_%%' and tgenabled <> 'D'",
    )
    assert enabled == [(3,)]

    # changes made while the triggers were off, then on again: a deep reconcile recounts
    _execute(s.warehouse, "alter table raw_marketplace.orders disable trigger elt_rows_deleted")
    _execute(s.warehouse, "delete from raw_marketplace.orders where order_id <= 5")
    _execute(s.warehouse, "alter table raw_marketplace.orders enable trigger elt_rows_deleted")
    deep_reconcile(s, config, ["orders"], width=1000)
    assert run_load(s, config, LoadRequest(["orders"])).tables["orders"].reconciled

    _execute(s.warehouse, "truncate raw_marketplace.products")
    emptied = run_load(s, config, LoadRequest(["products"])).tables["products"]
    assert emptied.raw_rows == 0 and emptied.reconciled is False


def test_ops_tables_dropped_by_hand_come_back_with_the_next_load(settings, elt_env, tmp_path):
    s, _ = fresh(settings, elt_env, tmp_path, "op")
    config = load_config(s.tables_config)
    run_load(s, config, LoadRequest(["products"]))
    _execute(s.warehouse, "drop table ops.raw_deletes; drop table ops.raw_row_counts")
    again = run_load(s, config, LoadRequest(["products"])).tables["products"]
    assert again.reconciled
    assert query(
        s.warehouse,
        "select to_regclass('ops.raw_deletes') is not null, "
        "to_regclass('ops.raw_row_counts') is not null",
    ) == [(True, True)]
