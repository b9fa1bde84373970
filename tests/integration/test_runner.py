"""`elt run` as a job: lock, history, failure handling with marts untouched, retry, status."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psycopg2
import pytest

from loader.cli import main
from loader.config import load_settings
from loader.db import connect_raw
from loader.errors import ExitCode
from loader.extract import reconcile
from loader.extract.tables import load_config
from loader.orchestrate import dbt, history, job, tasks
from loader.orchestrate.dbt import target_path
from loader.orchestrate.history import RunLock, RunLocked
from tests.conftest import (
    TEST_DEFAULTS,
    create_database,
    create_warehouse,
    offline_packages,
    query,
)

pytestmark = pytest.mark.slow
SECRET = "s3cret-Run-Pw"


@pytest.fixture(scope="module")
def env(settings, elt_env, tmp_path_factory):
    port = elt_env["ELT_PG_PORT"]
    create_database(settings, "run_src")
    create_warehouse(settings, "run_wh")
    return {
        "ELT_HOME": str(tmp_path_factory.mktemp("run-home")),
        "ELT_SOURCE_URL": f"postgresql://postgres@127.0.0.1:{port}/run_src",
        # the embedded server trusts local users: any password works, and none may leak
        "ELT_WAREHOUSE_URL": f"postgresql://postgres:{SECRET}@127.0.0.1:{port}/run_wh",
        **TEST_DEFAULTS,
        **offline_packages(),
    }


@pytest.fixture(scope="module")
def first_run(env):
    s = load_settings(env)
    printed = []
    code = job.run_job(s, job.RunOptions(scale=0.002, base_delay=0.01), echo=printed.append)
    assert code == 0
    assert not any(SECRET in line for line in printed)
    return s


def marts_digest(s) -> list[tuple]:
    return query(s.warehouse, """
        select 'fct_orders', count(*), md5(string_agg(t::text, '|' order by order_id))
        from dev_marts.fct_orders t
        union all
        select 'daily_revenue', count(*), md5(string_agg(t::text, '|' order by revenue_date))
        from dev_marts.daily_revenue t""")


def test_a_fresh_run_builds_everything_and_records_its_history(first_run):
    s = first_run
    runs = query(s.warehouse, "select status, summary from ops.pipeline_runs")
    assert runs[0][0] == "success"
    assert runs[0][1]["tests_since"] is None, "a first build tests every row"
    assert set(runs[0][1]["tables"]) == {"customers", "products", "orders", "order_items",
                                         "payments", "bids"}
    tasks = {r[0] for r in query(s.warehouse, "select task from ops.task_runs")}
    assert {"source_init", "load_wave_1", "load_wave_2", "load_wave_3", "dbt_build",
            "dbt_freshness"} <= tasks
    # source freshness reads raw alone: it runs beside the build, in its own dbt target
    overlap = query(s.warehouse, """
        select b.started_at < f.finished_at and f.started_at < b.finished_at
        from ops.task_runs b, ops.task_runs f
        where b.task = 'dbt_build' and f.task = 'dbt_freshness'""")
    assert overlap == [(True,)], "freshness did not run beside the build"
    assert runs[0][1]["freshness_ok"] is True
    assert (target_path() / "freshness" / "sources.json").exists()
    build_results = json.loads((target_path() / "run_results.json").read_text())
    assert any(r["unique_id"].startswith("model.") for r in build_results["results"]), \
        "the build's run_results.json is not overwritten by freshness"
    waves = dict(query(s.warehouse, "select task, table_names from ops.task_runs "
                                    "where task like 'load_wave_%'"))
    assert waves["load_wave_1"] == ["customers"]
    assert query(s.warehouse, "select count(*) from dev_marts.fct_orders")[0][0] > 0
    log_text = (s.logs_dir / "elt-runs.jsonl").read_text()
    assert SECRET not in log_text, "the run log never holds a password"
    lines = log_text.splitlines()
    record = json.loads(lines[-1])
    assert {"timestamp", "run_id", "task", "table", "rows", "duration_s", "status", "error"} \
        <= set(record)
    # the build says how far it got while it runs, and ends at every node done
    progress = [r["message"] for r in map(json.loads, lines)
                if r["task"] == "dbt_build" and r["status"] == "running"]
    assert progress, "dbt build showed no progress"
    done, total = map(int, progress[-1].split()[0].split("/"))
    assert done == total > 100
    # dbt counts the nodes it runs; run_results also lists hooks and exposures
    assert total <= len(build_results["results"])


def test_elementary_is_set_up_once_per_warehouse_and_again_for_another_version(
    first_run, monkeypatch
):
    """A warehouse elementary has set up (the run's warehouse was cloned from one whose
    setup ran dbt: elementary_template) runs no dbt for it; one whose schema carries another
    package version is set up again and marked with this one."""
    s = first_run
    calls = []
    monkeypatch.setattr(dbt, "run_dbt", lambda settings, *args, **kw: calls.append(args))
    assert dbt.ensure_elementary_models(s) is False
    assert calls == []
    stamp = query(s.warehouse, "select obj_description('dev_elementary'::regnamespace, "
                               "'pg_namespace')")[0][0]
    assert stamp == f"elementary {dbt.elementary_version()}"
    _comment_elementary(s, "elementary 0.0.1")
    try:
        assert dbt.ensure_elementary_models(s) is True
        assert calls and calls[0][:3] == ("run", "--select", "package:elementary")
        assert query(s.warehouse, "select obj_description('dev_elementary'::regnamespace, "
                                  "'pg_namespace')")[0][0] == stamp
    finally:
        _comment_elementary(s, stamp)


def _comment_elementary(s, comment: str) -> None:
    conn = connect_raw(s.warehouse, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("comment on schema dev_elementary is %s", (comment,))
    finally:
        conn.close()


def test_a_second_run_with_no_change_changes_nothing(first_run):
    s = first_run
    before = marts_digest(s)
    raw_before = query(s.warehouse, "select max(_dlt_load_id), count(*) from raw_marketplace.bids")
    assert job.run_job(s, echo=lambda _: None) == 0
    assert marts_digest(s) == before
    assert query(s.warehouse, "select max(_dlt_load_id), count(*) from raw_marketplace.bids") \
        == raw_before
    loads = query(s.warehouse, "select summary->'tables' from ops.pipeline_runs "
                               "order by started_at desc limit 1")[0][0]
    assert all(t["extracted"] == 0 for t in loads.values())


def test_killed_warehouse_connection_fails_the_run_and_leaves_marts_untouched(
    first_run, monkeypatch, tmp_path
):
    s = first_run
    before = marts_digest(s)
    from loader.source import simulator

    simulator.advance(s.source, 1)
    real_run_load = tasks.run_load
    kills = []

    def run_load_with_killed_connection(settings, config, request=None, **kwargs):
        if "orders" in (request.tables or []):
            conn = psycopg2.connect(settings.warehouse.dsn)
            kills.append(1)
            with conn.cursor() as cur:  # the server ends this session: SQLSTATE 57P01
                cur.execute("select pg_terminate_backend(pg_backend_pid())")
        return real_run_load(settings, config, request, **kwargs)

    monkeypatch.setattr(tasks, "run_load", run_load_with_killed_connection)
    # retried 3 times, then the warehouse counts as gone: exit 3, not 1 (a failed task)
    code = job.run_job(s, job.RunOptions(base_delay=0.01), echo=lambda _: None)
    assert code == ExitCode.UNAVAILABLE == 3
    assert len(kills) == 4, "a killed connection is transient: retried 3 times"
    run = query(s.warehouse, "select status, error from ops.pipeline_runs "
                             "order by started_at desc limit 1")[0]
    assert run[0] == "failed" and "server closed the connection" in run[1]
    skipped = query(s.warehouse, "select count(*) from ops.task_runs t join ops.pipeline_runs r"
                                 " using (run_id) where r.status = 'failed'"
                                 " and t.task = 'dbt_build'")
    assert skipped[0][0] == 0, "dbt never ran on a half-finished load"
    assert marts_digest(s) == before
    failed = history.unresolved_failures(s.warehouse)
    assert [f[1] for f in failed] == ["load_wave_2"]
    assert failed[0][2] == {"tables": ["orders", "products"]}

    monkeypatch.setattr(tasks, "run_load", real_run_load)
    # dbt's log of this run alone (the project's logs/dbt.log rotates at 10 MB)
    monkeypatch.setenv("DBT_LOG_PATH", str(tmp_path / "dbt-logs"))
    assert job.run_job(s, job.RunOptions(retry_failed=True), echo=lambda _: None) == 0
    assert history.unresolved_failures(s.warehouse) == []
    config = load_config(s.tables_config)
    for spec in config.tables.values():
        diffs = [d for d in reconcile.compare(s, config, spec) if d.table != "orders"]
        assert diffs == [], f"{spec.name} differs after the recovery run"
    assert marts_digest(s) != before, "the recovery run published the new day"
    summaries = [r[0] for r in query(s.warehouse, "select summary from ops.pipeline_runs"
                                                  " where status = 'success' order by started_at")]
    first, last = summaries[0], summaries[-1]
    assert last["tests_since"] == first["dbt_built_at"]
    # dbt read that start from the run history (var test_since: previous_build) and scoped
    # the row-by-row tests of the staging views to the rows loaded since
    compiled = next((target_path() / "compiled").rglob(
        "not_null_stg_marketplace__orders_order_id.sql")).read_text()
    assert f"_loaded_at > '{first['dbt_built_at']}'" in compiled
    # ... with the same vars as the first build (the scope is in the run history, not in a
    # var): dbt kept its partial parse instead of parsing the whole project again
    logged = (tmp_path / "dbt-logs" / "dbt.log").read_text(errors="replace")
    assert "Running with dbt" in logged
    assert "Unable to do partial parsing" not in logged


def test_retry_failed_with_nothing_failed_says_so(first_run):
    lines = []
    assert job.run_job(first_run, job.RunOptions(retry_failed=True), echo=lines.append) == 0
    assert "no failed tasks to retry" in lines


def test_a_concurrent_run_is_refused_within_a_second(first_run, env):
    s = first_run
    holder = RunLock(s.warehouse)
    holder.acquire()
    try:
        t0 = time.monotonic()
        with pytest.raises(RunLocked, match="another elt run is in progress"):
            job.run_job(s, echo=lambda _: None)
        assert time.monotonic() - t0 < 1.0
        t0 = time.monotonic()
        out = subprocess.run([sys.executable, "-m", "loader.cli", "run"], capture_output=True,
                             text=True, env={**os.environ, **env}, timeout=60)
        elapsed = time.monotonic() - t0
        assert out.returncode == 2 and "another elt run is in progress" in out.stderr
        assert elapsed < 1.0, f"the CLI took {elapsed:.1f}s to refuse"
    finally:
        holder.release()


def test_a_crashed_run_leaves_no_stale_lock(first_run, env):
    s = first_run
    code = (
        "import os, signal, time\n"
        "from loader.config import load_settings\n"
        "from loader.orchestrate import history\n"
        "s = load_settings()\n"
        "lock = history.RunLock(s.warehouse); lock.acquire()\n"
        "history.start_run(s.warehouse, 'doomed-run', {})\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, timeout=60)
    assert out.returncode == -signal.SIGKILL
    lock = RunLock(s.warehouse)
    lock.acquire()  # the dead session took its lock with it
    lock.release()
    assert job.run_job(s, echo=lambda _: None) == 0
    assert query(s.warehouse, "select status from ops.pipeline_runs "
                              "where run_id = 'doomed-run'") == [("crashed",)]


def test_status_shows_runs_rates_percentiles_and_tables(first_run, env, capsys, monkeypatch):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["runs"]["last"][0]["status"] in ("success", "failed")
    assert 0 < status["runs"]["success_rate"] <= 1
    assert status["tasks"]["dbt_build"]["p50_s"] > 0
    assert status["tasks"]["dbt_build"]["p95_s"] >= status["tasks"]["dbt_build"]["p50_s"]
    assert {t["table"] for t in status["tables"]} >= {"orders", "bids"}
    assert all(t["freshness_lag_s"] is not None for t in status["tables"])
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "p95" in out and "success rate" in out and "watermark" in out


def test_elt_dag_draws_the_whole_flow(first_run, env, tmp_path, monkeypatch, capsys):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    target = tmp_path / "dag.png"
    assert main(["dag", "--output", str(target)]) == 0
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert target.stat().st_size > 20_000
    # the minute it takes is not silent: it says what it does before each step
    said = capsys.readouterr().err
    assert "parsing the dbt project" in said and "drawing 6 tables in 3 load waves" in said
