"""The pipeline as Dagster assets (loader/dagster), materialised in-process against the
embedded warehouse: the raw and marts `elt run` builds from the same source, a failed load
that stops dbt, retries, and the warehouse lock shared with `elt run`."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import dagster as dg
import psycopg2
import pytest

from loader.config import PROJECT_ROOT, Endpoint, load_settings
from loader.dagster import raw
from loader.dagster.alerts import alert_on_failed_run
from loader.dagster.build import build_definitions
from loader.dagster.report import REPORT_KEY
from loader.dagster.resources import EltResource
from loader.db import execute
from loader.orchestrate import job
from loader.orchestrate.history import RunLock
from loader.orchestrate.publish import last_publication
from loader.source import simulator
from loader.source.simulator import SimConfig
from tests.conftest import SIM_END, TEST_DEFAULTS, create_database, create_warehouse, query

pytestmark = pytest.mark.slow
SCALE = 0.002
# bookkeeping columns that say when a row was loaded or validated, not what it holds
BOOKKEEPING_PREFIX = "_"


@dataclass(frozen=True)
class Pipelines:
    """One source; a warehouse that Dagster builds, and one that `elt run` builds."""

    dagster_env: dict[str, str]
    elt_env: dict[str, str]
    compare: Endpoint  # a database that sees the three others through postgres_fdw
    port: str

    @property
    def source(self) -> Endpoint:
        return load_settings(self.dagster_env).source

    @property
    def warehouse(self) -> Endpoint:
        return load_settings(self.dagster_env).warehouse


@pytest.fixture(scope="module")
def pipelines(settings, elt_env, tmp_path_factory) -> Pipelines:
    port = elt_env["ELT_PG_PORT"]
    for name in ("dg_src", "dg_cmp"):
        create_database(settings, name)
    for name in ("dg_wh", "dg_ref"):
        create_warehouse(settings, name)

    def env(home: str, warehouse_db: str) -> dict[str, str]:
        return {
            **TEST_DEFAULTS,
            "ELT_HOME": str(tmp_path_factory.mktemp(home)),
            "ELT_PG_PORT": port,
            "ELT_SOURCE_URL": f"postgresql://postgres@127.0.0.1:{port}/dg_src",
            "ELT_WAREHOUSE_URL": f"postgresql://postgres@127.0.0.1:{port}/{warehouse_db}",
            "ELT_DBT_THREADS": "2",
        }

    found = Pipelines(env("dg-home", "dg_wh"), env("ref-home", "dg_ref"),
                      settings.warehouse.with_database("dg_cmp"), port)
    simulator.init(found.source, SimConfig(scale=SCALE, seed=17, end_date=SIM_END))
    return found


def materialise(
    env: dict[str, str], selection: list[dg.AssetKey] | None = None, lock_wait: float = 60.0
) -> dg.ExecuteInProcessResult:
    """The daily job (every asset and check), or `selection`, in this process."""
    defs = build_definitions(env, lock_wait_seconds=lock_wait)
    daily = defs.resolve_job_def("marketplace_daily")
    return daily.execute_in_process(raise_on_error=False, asset_selection=selection)


def raw_keys(env: dict[str, str]) -> list[dg.AssetKey]:
    graph = build_definitions(env).resolve_asset_graph()
    return [k for k in graph.get_all_asset_keys() if k.path[0] == "raw_marketplace"]


def failure_messages(result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(e.step_failure_data.error.message
                     for e in result.get_step_failure_events())




def attach(p: Pipelines, local: str, database: str, schema: str) -> None:
    """`database`.`schema` as the foreign schema `local` of the comparison database."""
    execute(
        p.compare,
        "create extension if not exists postgres_fdw",
        f"create server if not exists {database} foreign data wrapper postgres_fdw "
        f"options (host '127.0.0.1', port '{p.port}', dbname '{database}')",
        f"create user mapping if not exists for current_user server {database} "
        "options (user 'postgres')",
        f"drop schema if exists {local} cascade",
        f"create schema {local}",
        f"import foreign schema {schema} from server {database} into {local}",
    )


def columns(p: Pipelines, schema: str, table: str) -> list[str]:
    return [r[0] for r in query(
        p.compare,
        "select column_name from information_schema.columns where table_schema = %s "
        "and table_name = %s order by ordinal_position", (schema, table))]


def tables(p: Pipelines, schema: str) -> set[str]:
    return {r[0] for r in query(p.compare, "select table_name from information_schema.tables "
                                           "where table_schema = %s", (schema,))}


def except_both_ways(p: Pipelines, left: str, right: str, cols: list[str]) -> tuple[int, int]:
    """Rows of `left` not in `right` and of `right` not in `left` (EXCEPT ALL: duplicates
    count), on `cols`."""
    listed = ", ".join(f'"{c}"' for c in cols)
    a = f"select {listed} from {left}"
    b = f"select {listed} from {right}"
    return query(p.compare, f"select (select count(*) from ({a} except all {b}) as l), "
                            f"(select count(*) from ({b} except all {a}) as r)")[0]


def assert_raw_equals_source(p: Pipelines) -> None:
    attach(p, "cmp_source", "dg_src", "marketplace")
    attach(p, "cmp_raw", "dg_wh", "raw_marketplace")
    for table in ("customers", "products", "orders", "order_items", "payments", "bids"):
        cols = columns(p, "cmp_source", table)
        assert set(cols) <= set(columns(p, "cmp_raw", table)), table
        diff = except_both_ways(p, f"cmp_source.{table}", f"cmp_raw.{table}", cols)
        assert diff == (0, 0), f"raw.{table} differs from the source: {diff}"


def assert_marts_equal_elt_runs(p: Pipelines) -> None:
    attach(p, "cmp_dagster_marts", "dg_wh", "dev_marts")  # ELT_ENV=dev
    attach(p, "cmp_elt_marts", "dg_ref", "dev_marts")
    marts = tables(p, "cmp_dagster_marts")
    graph = build_definitions(p.dagster_env).resolve_asset_graph()
    assets = {k.path[-1] for k in graph.get_all_asset_keys() if k.path[0] == "marts"}
    assert marts == assets == tables(p, "cmp_elt_marts"), "every mart, on both sides"
    for mart in sorted(marts):
        cols = columns(p, "cmp_dagster_marts", mart)
        assert cols == columns(p, "cmp_elt_marts", mart), mart
        compared = [c for c in cols if not c.startswith(BOOKKEEPING_PREFIX)]
        diff = except_both_ways(p, f"cmp_dagster_marts.{mart}", f"cmp_elt_marts.{mart}",
                                compared)
        assert diff == (0, 0), f"marts.{mart}: Dagster's and elt run's differ: {diff}"
    assert query(p.compare, "select count(*) from cmp_dagster_marts.fct_orders")[0][0] > 0


def test_dagster_builds_the_raw_and_marts_that_elt_run_builds(pipelines: Pipelines) -> None:
    """After `elt source init`, then after one simulated day: every asset materialised by
    Dagster gives raw = source and the marts `elt run` builds from the same source."""
    p = pipelines
    for day in (0, 1):
        if day:
            simulator.advance(p.source, 1)
        result = materialise(p.dagster_env)
        assert result.success, failure_messages(result)
        checks = [e.asset_check_evaluation_data for e in result.all_events
                  if e.event_type_value == "ASSET_CHECK_EVALUATION"]
        reconciled = [c for c in checks if c.check_name == raw.RECONCILED]
        assert len(reconciled) == 6 and all(c.passed for c in reconciled)
        assert any(c.check_name.startswith("not_null") for c in checks), "dbt tests are checks"
        built = {e.asset_key for e in result.get_asset_materialization_events()}
        assert REPORT_KEY in built and dg.AssetKey(["marts", "fct_orders"]) in built
        fast = job.RunOptions(base_delay=0.01)
        assert job.run_job(load_settings(p.elt_env), fast, echo=lambda _: None) == 0
        assert_raw_equals_source(p)
        assert_marts_equal_elt_runs(p)


def daily_job() -> dg.JobDefinition:
    """The daily job as a run worker loads it (reconstructable): from the environment."""
    return build_definitions().resolve_job_def("marketplace_daily")


IN_PROCESS = {"execution": {"config": {"in_process": {}}}}


def test_a_failed_load_stops_dbt_and_fails_the_run_and_its_retry_completes(
    pipelines: Pipelines, monkeypatch, tmp_path, inbox
) -> None:
    """A load that fails (a cursor column gone from the source) fails the run before dbt and
    alerts; once the column is back, Dagster's re-execution from the failure completes it."""
    p = pipelines
    for name, value in p.dagster_env.items():
        monkeypatch.setenv(name, value)
    simulator.advance(p.source, 1)
    published = last_publication(p.warehouse, "dev")
    job_def = dg.reconstructable(daily_job)
    with dg.DagsterInstance.local_temp(str(tmp_path)) as instance:
        execute(p.source, "alter table marketplace.orders rename column updated_at to moved_at")
        try:
            with dg.execute_job(job_def, instance, run_config=IN_PROCESS,
                                raise_on_error=False) as failed:
                events = failed.all_events
                failures = [e.step_key for e in failed.get_step_failure_events()]
                message = failure_messages(failed)
        finally:
            execute(p.source,
                    "alter table marketplace.orders rename column moved_at to updated_at")
        assert not failed.success and failures == ["load_raw"]
        assert "updated_at not in source table marketplace.orders" in message
        started = {e.step_key for e in events if e.event_type_value == "STEP_START"}
        assert "dbt_build" not in started, "dbt never builds on a failed load"
        assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in events), \
            "a configuration error is not retried"
        assert last_publication(p.warehouse, "dev") == published, "the marts keep their last build"

        assert_failure_alerted(p, instance, failed.run_id, inbox)

        retry = dg.ReexecutionOptions.from_failure(failed.run_id, instance)
        with dg.execute_job(job_def, instance, run_config=IN_PROCESS, raise_on_error=False,
                            reexecution_options=retry) as retried:
            assert retried.success, failure_messages(retried)
            steps = {e.step_key for e in retried.all_events if e.event_type_value == "STEP_START"}
        assert {"load_raw", "dbt_build"} <= steps
    now = last_publication(p.warehouse, "dev")
    assert now is not None and now != published, "the retry's build was published"
    assert_raw_equals_source(p)


def assert_failure_alerted(p: Pipelines, instance, run_id: str, inbox) -> None:
    """The run-failure sensor sends elt run's alert for the failed run to the channels."""
    box, http_port, _ = inbox
    run = instance.get_run_by_id(run_id)
    failure = next(e.dagster_event for e in instance.all_logs(run_id)
                   if e.dagster_event and e.dagster_event.event_type_value == "PIPELINE_FAILURE")
    elt = EltResource(environ={**p.dagster_env, "ELT_ALERT_SUPPRESS_MINUTES": "0",
                               "ELT_ALERT_WEBHOOK_URL": f"http://127.0.0.1:{http_port}/hook"})
    context = dg.build_run_status_sensor_context(
        sensor_name="alert_on_failed_run", dagster_event=failure, dagster_instance=instance,
        dagster_run=run, resources={"elt": elt},
    ).for_run_failure()
    alert_on_failed_run(context)
    sent = [body for path, body in box.posts if path == "/hook"]
    assert len(sent) == 1 and sent[0]["event"] == "run_failed", sent
    assert "load_raw" in sent[0]["failed_tasks"]
    assert "updated_at not in source table" in json.dumps(sent[0])


def test_a_transient_failure_is_retried_with_backoff(pipelines, monkeypatch) -> None:
    """The load's RetryPolicy retries what `elt run` retries (a lost connection)."""
    p = pipelines
    calls = []
    real = raw.run_load

    def once_lost(*args, **kwargs):
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise psycopg2.OperationalError("server closed the connection unexpectedly")
        return real(*args, **kwargs)

    monkeypatch.setattr(raw, "run_load", once_lost)
    result = materialise(p.dagster_env, raw_keys(p.dagster_env))
    assert result.success, failure_messages(result)
    assert len(calls) == 2
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(retries) == 1


def test_elt_run_is_refused_while_a_dagster_step_holds_the_warehouse(
    pipelines, monkeypatch
) -> None:
    p = pipelines
    refused = []
    real = raw.run_load

    def load_while_elt_runs(*args, **kwargs):
        # the step holds the warehouse lock here: an `elt run` on the same warehouse starts
        refused.append(subprocess.run(
            [sys.executable, "-m", "loader.cli", "run"], cwd=PROJECT_ROOT,
            env={"PATH": "/usr/bin:/bin", **p.dagster_env}, capture_output=True, text=True,
        ))
        return real(*args, **kwargs)

    monkeypatch.setattr(raw, "run_load", load_while_elt_runs)
    result = materialise(p.dagster_env, raw_keys(p.dagster_env))
    assert result.success, failure_messages(result)
    assert refused[0].returncode == 2, refused[0].stderr
    assert "the warehouse is locked by dagster run" in refused[0].stderr
    assert "(load_raw)" in refused[0].stderr and result.run_id[:8] in refused[0].stderr


def test_a_dagster_step_waits_for_elt_run_and_gives_up_with_a_clear_message(
    pipelines, monkeypatch
) -> None:
    p = pipelines
    started = []
    real = raw.run_load

    def recorded(*args, **kwargs):
        started.append(time.monotonic())
        return real(*args, **kwargs)

    monkeypatch.setattr(raw, "run_load", recorded)
    held = RunLock(p.warehouse)  # what `elt run` takes first
    held.acquire()
    try:
        refused = materialise(p.dagster_env, raw_keys(p.dagster_env), lock_wait=1.0)
        assert not refused.success and not started
        assert "another elt run is in progress" in failure_messages(refused)
        assert "waited 1s" in failure_messages(refused)
        released = []

        def release() -> None:
            released.append(time.monotonic())
            held.release()

        timer = threading.Timer(3.0, release)
        timer.start()
        waited = materialise(p.dagster_env, raw_keys(p.dagster_env), lock_wait=60.0)
        timer.join()
    finally:
        held.release()
    assert waited.success, failure_messages(waited)
    assert started and released and started[0] >= released[0], "the load began after elt run"

