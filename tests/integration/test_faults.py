"""Faults and bad input: each ends in seconds with a message and the right exit code, and
nothing is lost (issue #20)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from loader import schemas
from loader.config import load_settings
from loader.db import execute as db_execute
from loader.extract import export, repair
from loader.extract.pipeline import make_pipeline, run_load, table_states
from loader.extract.plan import LoadRequest
from loader.extract.results import LoadError
from loader.extract.tables import load_config
from loader.orchestrate import history, job
from tests.conftest import query
from tests.integration.test_loader import (
    _execute,
    assert_raw_equals_source,
    commit_a_copy_of_row_one,
    custom_source,
    fresh,
)

pytestmark = pytest.mark.slow
NOW = ", 'updated_at', now()"  # a copied row written now, by a correct clock


def elt(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "loader.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_an_unexpected_load_error_ends_elt_run_in_seconds_and_frees_the_lock(
    settings, elt_env, tmp_path, monkeypatch
):
    """An error that is none of the loader's own (here a bug in the export) used to make
    itself its own cause; the runner walked that cycle forever, holding the run lock."""
    s, _ = fresh(settings, elt_env, tmp_path, "hang", scale=0.002)

    def broken_export(*args, **kwargs):
        raise ZeroDivisionError("a bug in the export")

    monkeypatch.setattr(export, "export_table", broken_export)
    outcome: dict = {}

    def run() -> None:
        outcome["code"] = job.run_job(s, job.RunOptions(base_delay=0.01), echo=lambda _: None)

    worker = threading.Thread(target=run, daemon=True)
    t0 = time.monotonic()
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "elt run hung on a load error"
    assert outcome["code"] == 1
    assert time.monotonic() - t0 < 60
    lock = history.RunLock(s.warehouse)
    lock.acquire()  # raises RunLocked if the failed run still held it
    lock.release()
    run = query(s.warehouse, "select status, error from ops.pipeline_runs")[0]
    assert run[0] == "failed" and "a bug in the export" in run[1]


def test_a_row_dated_in_the_future_does_not_stop_later_increments(settings, elt_env, tmp_path):
    s, _ = fresh(settings, elt_env, tmp_path, "future", scale=0.002)
    config = load_config(s.tables_config)
    run_load(s, config)
    # the trigger keeps updated_at unless the application sets it: an application clock
    # gone wrong writes one order far in the future, another at infinity
    _execute(s.source, "update marketplace.orders set updated_at = '9999-12-31', "
                       "status = 'future' where order_id = 5")
    _execute(s.source, "update marketplace.payments set updated_at = 'infinity' "
                       "where payment_id = 6")
    first = run_load(s, config)
    orders = first.tables["orders"]
    assert orders.future_rows == 1 and orders.future_keys == ["5"], "the row is reported"
    assert first.tables["payments"].future_keys == ["6"]
    watermark = table_states(make_pipeline(s, config))["orders"]["watermark"]
    assert watermark < "9999", f"the watermark passed the source's clock: {watermark}"
    # later changes, written by correct clocks, still arrive
    commit_a_copy_of_row_one(s, "orders", "order_id", NOW)
    _execute(s.source, "update marketplace.orders set status = 'later' where order_id = 7")
    commit_a_copy_of_row_one(s, "payments", "payment_id", NOW)
    later = run_load(s, config)
    assert later.tables["orders"].rows_extracted == 2, "the future row is not extracted again"
    assert_raw_equals_source(s, config)
    # correcting the row brings the correction too
    _execute(s.source, "update marketplace.orders set updated_at = now(), status = 'fixed' "
                       "where order_id = 5")
    fixed = run_load(s, config)
    assert fixed.tables["orders"].future_rows == 0
    assert query(s.warehouse, "select status from raw_marketplace.orders where order_id = 5") \
        == [("fixed",)]
    assert_raw_equals_source(s, config)


def test_a_watermark_poisoned_by_an_older_version_resumes_from_the_source_clock(
    settings, elt_env, tmp_path
):
    """State written before the cap: the watermark sits at 9999; the next increment resumes
    from the clock of the load that wrote it, and later rows arrive."""
    s, _ = fresh(settings, elt_env, tmp_path, "poison", scale=0.002)
    config = load_config(s.tables_config)
    run_load(s, config)
    p = make_pipeline(s, config)
    with p.managed_state() as state:
        for source in state["sources"].values():
            orders = source["resources"]["orders"]
            orders["watermark"] = "9999-12-31 00:00:00+00"
    p.sync_destination = lambda: None  # keep the poisoned local state for this one run
    commit_a_copy_of_row_one(s, "orders", "order_id", NOW)
    result = run_load(s, config, LoadRequest(["orders"]))
    assert result.tables["orders"].rows_extracted >= 1
    assert_raw_equals_source(s, config)


def test_null_and_repeated_keys_go_to_dead_letters_and_the_rest_loads(
    settings, elt_env, tmp_path
):
    # a source whose key is a convention, not a constraint
    s, _ = custom_source(settings, elt_env, tmp_path, "badkey",
                         "source_schema: app\ndataset: raw_app\ntables:\n"
                         "  events: {primary_key: event_id, mode: timestamp, cursor: changed_at}\n",
                         """
        create schema app;
        create table app.events (event_id bigint, kind text,
                                 changed_at timestamptz not null default now());
        insert into app.events (event_id, kind) select g, 'ok' from generate_series(1, 50) g;
        insert into app.events (event_id, kind) values (null, 'no key'), (7, 'second seven');
    """)
    config = load_config(s.tables_config)
    result = run_load(s, config).tables["events"]
    assert result.raw_rows == 49, "49 rows have a good key (1 to 50 but 7)"
    assert result.reconciled, "raw equals what the source can hold, the rest is set aside"
    assert result.dead_letters == 3
    dead = query(s.warehouse, "select row_key, error, row_image->>'kind' from ops.dead_letters "
                              "order by row_key nulls first, row_image->>'kind'")
    assert dead[0][0] in (None, "")
    assert dead[0][1].startswith("null key") and dead[0][2] == "no key"
    assert [(d[0], d[2]) for d in dead[1:]] == [("7", "ok"), ("7", "second seven")]
    assert all(d[1] == "duplicate key: 2 source rows share it" for d in dead[1:])
    assert query(s.warehouse, "select count(*) from raw_app.events where event_id = 7") == [(0,)]
    # the cause is fixed at the source without touching the cursor: the count says so, and
    # the deep reconciliation brings both rows of the former duplicate
    _execute(s.source, "update app.events set event_id = 51 where kind = 'second seven'")
    again = run_load(s, config).tables["events"]
    assert again.reconciled is False and again.source_rows == 51
    repair.deep_reconcile(s, config)
    assert query(s.warehouse, "select count(*) from raw_app.events where event_id in (7, 51)") \
        == [(2,)]
    assert run_load(s, config).tables["events"].reconciled


# Bad input (a table, key or cursor not in the source, refused connections): exit 2 and one
# line, checked by the fault-injection script (tests/fault_injection.py, short form in
# test_fault_injection.py).


def test_exit_codes_tell_a_lost_warehouse_from_bad_input(settings, elt_env, tmp_path):
    """3 when a database goes away (after the retries), 2 for bad input, and a run that
    died is marked crashed by the next command that reads the history."""
    s, env = fresh(settings, elt_env, tmp_path, "gone", scale=0.001)
    schemas.ensure_on(s.warehouse, "ops")
    history.start_run(s.warehouse, "dead-run", {})  # a run whose process died
    done = elt(env, "status", "--json")
    assert done.returncode == 0, done.stderr
    assert query(s.warehouse, "select status from ops.pipeline_runs "
                              "where run_id = 'dead-run'") == [("crashed",)]
    # a port where nothing listens: every retry is refused
    gone = {**env, "ELT_WAREHOUSE_URL": "postgresql://postgres@127.0.0.1:9/gone_wh"}
    done = elt(gone, "load", timeout=300)
    assert done.returncode == 3, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert elt(env, "run", "--scale", "-1").returncode == 2
    assert elt(env, "run", "--simulate-days", "-1").returncode == 2


def marts_fingerprint(s) -> dict[str, tuple]:
    """Every mart's row count and a digest of its rows without _validated_at (when a build
    wrote them), in a fixed order."""
    tables = [r[0] for r in query(s.warehouse, "select table_name from information_schema.tables "
                                               "where table_schema = 'dev_marts' order by 1")]
    return {
        t: query(s.warehouse, "select count(*), md5(coalesce(string_agg(x, '|' order by x), ''))"
                              " from (select (to_jsonb(m) - '_validated_at')::text as x "
                              f"from dev_marts.{t} m) r")[0]
        for t in tables
    }


def test_sigkill_of_elt_run_alone_ends_its_dbt_and_the_next_run_completes_the_build(
    settings, elt_env, tmp_path
):
    import psutil

    s, env = fresh(settings, elt_env, tmp_path, "killrun", scale=0.002)
    assert job.run_job(s, job.RunOptions(base_delay=0.01), echo=lambda _: None) == 0
    _execute(s.source, "update marketplace.orders set status = 'shipped' where order_id < 40")
    commit_a_copy_of_row_one(s, "orders", "order_id", NOW)
    run = subprocess.Popen([sys.executable, "-m", "loader.cli", "run"],
                           env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    parent = psutil.Process(run.pid)
    deadline = time.monotonic() + 300
    builds: list = []
    while not builds and time.monotonic() < deadline and run.poll() is None:
        builds = [c for c in parent.children(recursive=True) if "build" in c.cmdline()]
        time.sleep(0.1)
    assert builds, "the run never started dbt build"
    time.sleep(6)  # into the models
    assert builds[0].is_running(), "the build ended before the kill: nothing was tested"
    dbt = parent.children(recursive=True)
    run.kill()  # the runner alone, as a supervisor or the OOM killer does
    run.wait()
    _, alive = psutil.wait_procs(dbt, timeout=5)
    assert not alive, f"dbt outlived its runner: {[p.cmdline()[:3] for p in alive]}"

    printed: list[str] = []
    assert job.run_job(s, job.RunOptions(base_delay=0.01), echo=printed.append) == 0
    killed = query(s.warehouse, "select run_id from ops.pipeline_runs where status = 'crashed'")
    assert len(killed) == 1
    assert any(f"run {killed[0][0]} was killed" in line for line in printed), printed
    incremental = marts_fingerprint(s)
    from loader.orchestrate.dbt import DBT_VARS, run_dbt

    run_dbt(s, "build", "--full-refresh", "--vars", DBT_VARS)
    assert marts_fingerprint(s) == incremental, "the marts differ from a full refresh"


def test_a_new_source_column_with_a_default_reaches_the_rows_already_in_raw(
    settings, elt_env, tmp_path
):
    s, _ = fresh(settings, elt_env, tmp_path, "newcol", scale=0.002)
    config = load_config(s.tables_config)
    run_load(s, config)
    _execute(s.source, "alter table marketplace.products add column color text not null "
                       "default 'red'; alter table marketplace.orders add column channel text")
    result = run_load(s, config)
    assert result.tables["products"].action == "full"
    assert any("new column color" in n for n in result.tables["products"].drift)
    assert query(s.warehouse, "select count(*) filter (where color = 'red'), count(*) "
                              "from raw_marketplace.products")[0] == \
        query(s.source, "select count(*), count(*) from marketplace.products")[0]
    assert_raw_equals_source(s, config)
    assert run_load(s, config).tables["products"].action == "increment", "reloaded once"


def crash_a_load_of_changed_rows(s, env, also: str = ""):
    """Load, change rows of four tables (and run `also` on the source), then SIGKILL `elt
    load` in its load step: a load package is left pending. Returns the loader config."""
    config = load_config(s.tables_config)
    run_load(s, config)
    for table in ("orders", "order_items", "payments", "customers"):
        _execute(s.source, f"update marketplace.{table} set updated_at = now() "
                           f"where {table[:-1]}_id < 30")
    if also:
        _execute(s.source, also)
    crashed = subprocess.run([sys.executable, "-m", "tests.integration.crash_load", "load"],
                             env={**os.environ, **env}, capture_output=True, text=True,
                             timeout=300)
    assert crashed.returncode == -9, crashed.stderr[-2000:]
    return config


def test_a_recovered_pending_load_says_so_in_a_line_not_in_tracebacks(
    settings, elt_env, tmp_path
):
    s, env = fresh(settings, elt_env, tmp_path, "pending", scale=0.002)
    config = crash_a_load_of_changed_rows(s, env)
    done = elt(env, "load")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr
    assert "pending" in done.stderr
    assert len(done.stderr.splitlines()) < 30, done.stderr
    assert_raw_equals_source(s, config)


def test_a_pending_load_whose_export_files_are_gone_is_extracted_again(
    settings, elt_env, tmp_path
):
    """The load package holds manifests; the rows are in the export files they name. A user
    who cleans the exports directory while a load is pending loses nothing: the next load
    says the files are gone and extracts again from the last completed load."""
    import shutil

    s, env = fresh(settings, elt_env, tmp_path, "gone", scale=0.002)
    config = crash_a_load_of_changed_rows(s, env)
    exports = s.dlt_dir / "exports"
    assert {p.suffix for p in exports.iterdir()} == {".pgcopy", ".csv"}
    shutil.rmtree(exports)
    done = elt(env, "load")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "re-extracting from the last completed load" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert_raw_equals_source(s, config)


def test_a_load_killed_while_it_aborted_a_pending_package_loses_nothing(
    settings, elt_env, tmp_path
):
    """finish_pending drops a package it cannot finish with dlt's abort_packages, which first
    flags the package, then loads the abort. Killed between the two, the flagged package is
    no longer "pending" for dlt, and its abort, finished by the next load(), deletes every
    newer package: the next load's own rows would vanish while it reported success."""
    s, env = fresh(settings, elt_env, tmp_path, "aborting", scale=0.002)
    config = crash_a_load_of_changed_rows(s, env)
    pipeline = make_pipeline(s, config)
    (pending,) = pipeline.list_normalized_load_packages()
    pipeline._get_load_storage().normalized_packages.set_abort_flag(pending)  # then the kill
    assert not pipeline.has_pending_data
    done = elt(env, "load")
    assert done.returncode == 0, done.stderr[-3000:]
    assert_raw_equals_source(s, config)
    assert "finishing the abort of a load" in done.stderr, done.stderr


def test_a_whole_table_copy_run_again_after_a_kill_does_not_load_its_rows_twice(
    settings, elt_env, tmp_path
):
    """Killed after a table's COPY committed and before dlt recorded the job as done, the
    next load runs the job again; dlt empties a replaced table once per package, so the job
    must replace its first attempt's rows itself, or raw holds every row twice and each
    later load fails on the unique merge-key index."""
    s, env = fresh(settings, elt_env, tmp_path, "twice", scale=0.002)
    config = load_config(s.tables_config)
    crashed = subprocess.run([sys.executable, "-m", "tests.integration.crash_load", "committed"],
                             env={**os.environ, **env}, capture_output=True, text=True,
                             timeout=300)
    assert crashed.returncode == -9, crashed.stderr[-2000:]
    for _ in range(2):  # the load that finishes the package, then an increment on top
        done = elt(env, "load")
        assert done.returncode == 0, done.stderr[-3000:]
    for table, spec in config.tables.items():
        keys = ", ".join(spec.primary_key)
        total, distinct = query(s.warehouse, f"select count(*), count(distinct ({keys})) "
                                             f"from raw_marketplace.{table}")[0]
        assert total == distinct, f"{table}: {total - distinct} row(s) loaded twice"
    assert_raw_equals_source(s, config)


def _cmdline(process) -> list[str]:
    """A child's command line; none for one that ended meanwhile (a zombie until reaped)."""
    import psutil

    try:
        return process.cmdline()
    except psutil.Error:
        return []


def test_a_warehouse_killed_mid_run_exits_3_and_the_run_is_marked_crashed():
    """Its own server, killed with SIGKILL during `dbt build`: the scheduler sees 3 (the
    warehouse went away), not 2 (bad input), and the history says crashed once it is back."""
    import shutil
    import signal
    import tempfile

    import psutil

    from loader import warehouse
    from loader.source.simulator import SimConfig, init
    from tests.conftest import SIM_END, TEST_DEFAULTS, free_port

    home = tempfile.mkdtemp(prefix="elt-kill-")
    env = {"ELT_HOME": home, "ELT_PG_PORT": str(free_port()), **TEST_DEFAULTS}
    s = load_settings(env)
    warehouse.start(s)
    try:
        init(s.source, SimConfig(scale=0.002, seed=5, end_date=SIM_END))
        run = subprocess.Popen([sys.executable, "-m", "loader.cli", "run"],
                               env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
        parent = psutil.Process(run.pid)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and run.poll() is None and not any(
            "build" in _cmdline(c) for c in parent.children(recursive=True)
        ):
            time.sleep(0.1)
        time.sleep(2)
        os.kill(warehouse._postmaster_pid(s.pgdata), signal.SIGKILL)
        _, err = run.communicate(timeout=300)
        assert run.returncode == 3, err[-3000:]
        assert "Traceback" not in err
        done = elt(env, "status", "--json")  # starts nothing: the warehouse is down
        assert done.returncode == 3 and "not running" in done.stderr, done.stderr
        warehouse.start(s)
        assert elt(env, "status").returncode == 0
        assert query(s.warehouse, "select status from ops.pipeline_runs") == [("crashed",)]
    finally:
        warehouse.stop(s)
        shutil.rmtree(home, ignore_errors=True)


def commit_customer_with_order(s, n: int) -> None:
    """One source transaction: a new customer and an order of theirs."""
    _execute(s.source, f"""
        with c as (
            insert into marketplace.customers select (jsonb_populate_record(
                null::marketplace.customers, to_jsonb(t) || jsonb_build_object(
                    'customer_id', (select max(customer_id) + 1 from marketplace.customers),
                    'email', 'cut-{n}@example.com', 'updated_at', now()))).*
            from marketplace.customers t where customer_id = 1
            returning customer_id)
        insert into marketplace.orders select (jsonb_populate_record(
            null::marketplace.orders, to_jsonb(o) || jsonb_build_object(
                'order_id', (select max(order_id) + 1 from marketplace.orders),
                'customer_id', (select customer_id from c), 'updated_at', now()))).*
        from marketplace.orders o where order_id = 1""")


def test_one_load_is_one_cut_of_the_source(settings, elt_env, tmp_path, monkeypatch):
    """Customers load in the first wave, orders in the second: transactions that write a
    customer and their order together, committed between the waves and during an export,
    reach raw whole or not at all, and whole with the next load."""
    from loader.extract.cut import SnapshotHolder
    from loader.orchestrate.tasks import waves_for

    s, _ = fresh(settings, elt_env, tmp_path, "cut", scale=0.002)
    config = load_config(s.tables_config)
    run_load(s, config)
    real_export = export.export_table
    during: list[int] = []

    def export_after_a_commit(*args, **kwargs):
        if args[1].spec.name == "orders" and not during:  # (load, plan, ...)
            during.append(1)
            commit_customer_with_order(s, 2)
        return real_export(*args, **kwargs)

    monkeypatch.setattr(export, "export_table", export_after_a_commit)
    with SnapshotHolder(s.source) as holder:
        for n, wave in enumerate(waves_for(s, config)):
            run_load(s, config, LoadRequest(wave), holder=holder)
            if n == 0:
                commit_customer_with_order(s, 1)
    assert during, "no commit during the orders export"
    orphans = """select count(*) from raw_marketplace.orders o where not exists
                 (select from raw_marketplace.customers c where c.customer_id = o.customer_id)"""
    emails = "select count(*) from raw_marketplace.customers where email like 'cut-%'"
    assert query(s.warehouse, orphans) == [(0,)], "an order arrived without its customer"
    assert query(s.warehouse, emails) == [(0,)], "a customer arrived without their order"
    monkeypatch.undo()
    run_load(s, config)
    assert query(s.warehouse, emails) == [(2,)]
    assert query(s.warehouse, orphans) == [(0,)]
    assert_raw_equals_source(s, config)


def test_rows_written_by_clocks_hours_or_days_behind_arrive_with_the_next_load(
    settings, elt_env, tmp_path
):
    s, _ = fresh(settings, elt_env, tmp_path, "skew", scale=0.002)
    config = load_config(s.tables_config)
    run_load(s, config)
    for table in ("orders", "payments"):  # the watermarks reach now
        commit_a_copy_of_row_one(s, table, table[:-1] + "_id", NOW)
    run_load(s, config)
    # an application server whose clock runs 3 hours behind, another 3 days behind: inserts
    # and updates in timestamp mode, far behind the watermark and its 15-minute lag
    for behind, order_id in (("3 hours", 10), ("3 days", 11)):
        commit_a_copy_of_row_one(s, "orders", "order_id",
                                 f", 'updated_at', now() - interval '{behind}'")
        _execute(s.source, f"update marketplace.orders set status = 'skewed {behind}', "
                           f"updated_at = now() - interval '{behind}' where order_id = {order_id}")
    _execute(s.source, "update marketplace.payments set amount = amount + 1, "
                       "updated_at = now() - interval '3 days' where payment_id = 12")
    result = run_load(s, config)
    assert result.tables["orders"].caught_up == 4 and result.tables["payments"].caught_up == 1
    assert all(r.reconciled for r in result.tables.values())
    assert_raw_equals_source(s, config)  # same keys, same values of every column
    state = table_states(make_pipeline(s, config))["orders"]
    assert state["learned_lag_s"] >= 3 * 86400, "the table learned how far its clocks lag"
    # the learned window now holds such rows: they come with the export itself
    _execute(s.source, "update marketplace.orders set status = 'late again', "
                       "updated_at = now() - interval '2 days' where order_id = 13")
    again = run_load(s, config)
    assert again.tables["orders"].caught_up == 0 and again.tables["orders"].rows_extracted == 1
    assert_raw_equals_source(s, config)


BACKDATED = ("update marketplace.orders set status = 'skewed', "
             "updated_at = now() - interval '3 days' where order_id = 11")


def test_a_row_written_behind_the_window_before_a_killed_load_arrives_with_the_next(
    settings, elt_env, tmp_path
):
    """Only the count scan finds a row written behind the window, and it reports after the
    load commits. A load killed before then, finished by the next one, must not move the
    search past that row: the next load searches from the last load whose search ended."""
    s, env = fresh(settings, elt_env, tmp_path, "killsearch", scale=0.002)
    config = load_config(s.tables_config)
    run_load(s, config)
    commit_a_copy_of_row_one(s, "orders", "order_id", NOW)  # the watermarks reach now
    crash_a_load_of_changed_rows(s, env, also=BACKDATED)
    done = elt(env, "load")
    assert done.returncode == 0, done.stderr[-3000:]
    assert_raw_equals_source(s, config)  # order 11's status, not only the counts
    if "re-extracting from the last completed load" in done.stderr:
        return  # the package could not be finished (which job the kill hit varies): dropped,
        # the state went back to the last completed load, whose search found the row as usual
    assert "an earlier load stopped before its search ended" in done.stderr, done.stderr
    assert "learned_lag_s" not in table_states(make_pipeline(s, config))["orders"], \
        "rows re-checked after a kill say nothing about clocks"


def test_a_failed_source_count_fails_the_load_and_the_next_one_finds_what_it_missed(
    settings, elt_env, tmp_path, monkeypatch
):
    s, _ = fresh(settings, elt_env, tmp_path, "countfail", scale=0.002)
    config = load_config(s.tables_config)
    run_load(s, config)
    commit_a_copy_of_row_one(s, "orders", "order_id", NOW)
    run_load(s, config)
    _execute(s.source, BACKDATED)

    def broken_count(conn, statement, params):
        conn.close()
        raise OSError("the source went away during the count")

    monkeypatch.setattr(export, "_count_and_close", broken_count)
    with pytest.raises(LoadError, match="source count of .*orders.* failed"):
        run_load(s, config)
    monkeypatch.undo()
    (built_at,) = query(s.warehouse, "select now()::text")[0]
    result = run_load(s, config)
    assert result.tables["orders"].caught_up == 1
    assert all(r.reconciled for r in result.tables.values())
    assert_raw_equals_source(s, config)
    # rows only caught up (none in the window) are rows raw gained: the next build runs
    assert result.rows_extracted == 0
    assert history.raw_changed_since(s.warehouse, built_at), "the next elt run builds dbt"


def test_a_backfill_of_a_full_mode_table_keeps_the_rows_outside_its_window(
    settings, elt_env, tmp_path
):
    s, _ = custom_source(settings, elt_env, tmp_path, "fullback",
                         "source_schema: app\ndataset: raw_app\ntables:\n"
                         "  items: {primary_key: item_id, mode: full}\n",
                         """
        create schema app;
        create table app.items (item_id bigint primary key, amount numeric(12, 2),
                                updated_at timestamptz not null);
        insert into app.items select g, g, now() - interval '30 days'
        from generate_series(1, 40) g;""")
    config = load_config(s.tables_config)
    run_load(s, config)
    _execute(s.source, "update app.items set amount = 0, updated_at = now() "
                       "where item_id <= 5")
    window = (datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC) + timedelta(minutes=1))
    result = run_load(s, config, LoadRequest(["items"], backfill_window=window))
    assert result.tables["items"].rows_extracted == 5
    assert_raw_equals_source(s, config)  # all 40 rows, the 5 backfilled ones with amount 0


def test_a_table_whose_search_could_not_reach_back_is_compared_after_its_load(
    settings, elt_env, tmp_path
):
    """A pipeline state from an older version, whose last load never finished its search
    for rows behind the window, says no point to search from: the load compares the table
    row by row with the source (settle), which brings a row such a search would have found."""
    from loader.extract.results import LoadResult, TableResult
    from loader.extract.settle import settle

    s, config = loaded_with_a_row_written_behind(settings, elt_env, tmp_path, "unsearched")
    orders = TableResult("orders", config.tables["orders"].mode, "increment")
    orders.source_rows = orders.raw_rows = query(s.warehouse, "select count(*) from "
                                                              "raw_marketplace.orders")[0][0]
    orders.unsearched = True  # counts agree: only the flag sends the table to the compare
    settle(s, config, LoadResult(None, {"orders": orders}, 0.0))
    assert orders.repaired >= 1
    assert_raw_equals_source(s, config)


def page_is_all_visible(s, table: str, key: str, value: int) -> bool:
    return query(s.source, f"select all_visible from pg_visibility_map("
                           f"'marketplace.{table}', (select (ctid::text::point)[0]::bigint "
                           f"from marketplace.{table} where {key} = {value}))")[0][0]


def loaded_with_a_row_written_behind(settings, elt_env, tmp_path, name: str):
    """A source loaded twice (watermarks at its clock), then order 11 written 3 days behind
    the window (BACKDATED), its commit flushed (so that a vacuum may set its hint bits)."""
    s, _ = fresh(settings, elt_env, tmp_path, name, scale=0.002)
    _execute(s.source, "create extension if not exists pg_visibility")
    _execute(s.source, "alter table marketplace.orders set (autovacuum_enabled = off)")
    config = load_config(s.tables_config)
    run_load(s, config)
    commit_a_copy_of_row_one(s, "orders", "order_id", NOW)
    run_load(s, config)
    _execute(s.source, "set local synchronous_commit = on; " + BACKDATED)
    return s, config


def test_a_vacuum_after_rows_written_behind_the_window_does_not_hide_them(
    settings, elt_env, tmp_path
):
    """A vacuum may set the page of a row written behind the window all-visible before the
    next load: the search must find it anyway."""
    s, config = loaded_with_a_row_written_behind(settings, elt_env, tmp_path, "vacuumed")
    # a vacuum: the row's page is all-visible again (index_cleanup on, so that it removes the
    # old version's line pointer)
    for _ in range(20):  # an ANALYZE holding a snapshot can defer it
        db_execute(s.source, "vacuum (index_cleanup on) marketplace.orders")
        if page_is_all_visible(s, "orders", "order_id", 11):
            break
        time.sleep(0.5)
    assert page_is_all_visible(s, "orders", "order_id", 11)
    result = run_load(s, config).tables["orders"]
    assert result.caught_up == 1, "the vacuum hid the row from the search"
    assert_raw_equals_source(s, config)


def vacuum_count(s, table: str) -> int:
    return query(s.source, "select pg_stat_get_vacuum_count(c) + pg_stat_get_autovacuum_count(c)"
                           f" from (select 'marketplace.{table}'::regclass as c) t")[0][0]


def test_a_vacuum_cancelled_part_way_does_not_hide_rows_written_behind_the_window(
    settings, elt_env, tmp_path
):
    """The hazard that keeps the search on the whole table: a vacuum cancelled part-way (an
    autovacuum cancelled by a lock request, a VACUUM hit by statement_timeout) has set pages
    all-visible but counts itself nowhere; a row written behind the window on such a page
    must still arrive."""
    import psycopg2

    s, config = loaded_with_a_row_written_behind(settings, elt_env, tmp_path, "cancelled")
    vacuums = vacuum_count(s, "orders")
    # a vacuum slowed down so that it can be cancelled once it has set the row's page
    conn = psycopg2.connect(s.source.dsn)
    conn.autocommit = True
    pid = conn.get_backend_pid()
    outcome: list[BaseException | None] = []

    def slow_vacuum() -> None:
        try:
            with conn.cursor() as cur:
                cur.execute("set vacuum_cost_delay = 50; set vacuum_cost_limit = 1")
                cur.execute("vacuum (index_cleanup on) marketplace.orders")
            outcome.append(None)
        except psycopg2.errors.QueryCanceled as exc:
            outcome.append(exc)

    vacuum = threading.Thread(target=slow_vacuum)
    vacuum.start()
    deadline = time.monotonic() + 120
    while not page_is_all_visible(s, "orders", "order_id", 11) and vacuum.is_alive():
        assert time.monotonic() < deadline, "the vacuum never set the row's page"
        time.sleep(0.05)
    _execute(s.source, f"select pg_cancel_backend({pid})")
    vacuum.join(60)
    conn.close()
    assert outcome and outcome[0] is not None, "the vacuum ended before it was cancelled"
    assert page_is_all_visible(s, "orders", "order_id", 11)
    assert vacuum_count(s, "orders") == vacuums, "a cancelled vacuum counts itself nowhere"
    result = run_load(s, config).tables["orders"]
    assert result.caught_up == 1, "the cancelled vacuum hid the row from the search"
    assert_raw_equals_source(s, config)


def test_dead_letters_replay_once_the_cause_is_fixed(settings, elt_env, tmp_path):
    s, env = custom_source(settings, elt_env, tmp_path, "replay",
                           "source_schema: app\ndataset: raw_app\ntables:\n"
                           "  items: {primary_key: item_id, mode: full}\n",
                           """
        create schema app;
        create table app.items (item_id bigint primary key, amount numeric(12, 2));
        insert into app.items select g, g from generate_series(1, 40) g;""")
    config = load_config(s.tables_config)
    run_load(s, config)
    # a rule the warehouse's DBA added: raw rejects the rows that break it
    _execute(s.warehouse, "alter table raw_app.items add constraint amount_below_1000 "
                          "check (amount < 1000)")
    _execute(s.source, "update app.items set amount = 5000 where item_id in (3, 9)")
    result = run_load(s, config).tables["items"]
    assert result.dead_letters == 2 and result.raw_rows == 38
    listed = elt(env, "deadletters", "list")
    assert listed.returncode == 0 and "violates check constraint" in listed.stdout
    first = query(s.warehouse, "select min(dead_letter_id) from ops.dead_letters")[0][0]
    shown = elt(env, "deadletters", "show", str(first))
    assert '"amount": 5000' in shown.stdout.replace("5000.0", "5000"), shown.stdout
    refused = elt(env, "deadletters", "replay")  # the cause is still there
    assert refused.returncode == 1 and "2 still rejected" in refused.stdout, refused.stdout
    assert query(s.warehouse, "select count(*), max(attempts) from ops.dead_letters "
                              "where resolved_at is null") == [(2, 2)], "one letter per row"
    _execute(s.warehouse, "alter table raw_app.items drop constraint amount_below_1000")
    (built_at,) = query(s.warehouse, "select now()::text")[0]
    replayed = elt(env, "deadletters", "replay", "items")
    assert replayed.returncode == 0 and "2 replayed into raw" in replayed.stdout, replayed.stdout
    assert_raw_equals_source(s, config)
    assert history.raw_changed_since(s.warehouse, built_at), "the next elt run builds dbt"
    before = query(s.warehouse, "select max(_dlt_load_id), count(*) from raw_app.items")
    again = elt(env, "deadletters", "replay")
    assert again.returncode == 0 and "nothing to replay" in again.stdout
    assert query(s.warehouse, "select max(_dlt_load_id), count(*) from raw_app.items") == before
    resolutions = query(s.warehouse, "select resolution from ops.dead_letters order by 1")
    assert [h[0].split(" (")[0] for h in resolutions] == ["replayed", "replayed"]
    assert elt(env, "deadletters", "discard", str(first)).returncode == 2, "already resolved"
