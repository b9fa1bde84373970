"""Marts published all-or-nothing (write-audit-publish, issue #14): what a login user granted
only `reporter` reads changes only when a build and its error-severity tests succeed, and then
every mart changes in one transaction; a build that fails a test or is killed leaves it as it
was. The copies the builds alternate between stay equal to a full refresh."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import psutil
import psycopg2
import pytest

from loader.config import Settings
from loader.db import connect_raw
from loader.orchestrate import dbt, job, tasks
from loader.orchestrate.dbt import run_dbt
from loader.orchestrate.publish import Publication, build_invocation, last_publication
from loader.source import simulator
from tests.conftest import query
from tests.integration.test_faults import _execute, fresh, marts_fingerprint

pytestmark = pytest.mark.slow

REPORTER = "elt_wap_reporter"  # a login user granted only `reporter` (roles are cluster-wide)
MARTS = {"dim_customers", "dim_products", "dim_customers_history", "dim_products_history",
         "fct_orders", "fct_order_items", "fct_payments", "fct_bids", "daily_revenue",
         "monthly_active_users"}
BAD_ORDER = 990_001  # an order whose status no mart test accepts


class Reporter:
    """One session of the reporter login user, kept open (in autocommit: it holds no lock
    between statements) so that temporary tables keep what it read before a run."""

    def __init__(self, settings: Settings) -> None:
        self.endpoint = dataclasses.replace(settings.warehouse, user=REPORTER, password="")
        self.conn = connect_raw(self.endpoint, autocommit=True)

    def rows(self, sql: str, params=None) -> list[tuple]:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def marts(self) -> set[str]:
        return {r[0] for r in self.rows("select table_name from information_schema.tables "
                                        "where table_schema = 'dev_marts'")}

    def keep(self) -> None:
        """What every mart returns now, into temporary tables."""
        for mart in MARTS:
            self.rows(f"drop table if exists before_{mart}")
            self.rows(f"create temporary table before_{mart} as select * from dev_marts.{mart}")

    def changed(self) -> dict[str, tuple[int, int]]:
        """Per mart that differs from what keep() kept: (rows only now, rows only before),
        by EXCEPT ALL both ways."""
        out = {}
        for mart in sorted(MARTS):
            now, before = self.rows(
                f"select (select count(*) from (select * from dev_marts.{mart} except all "
                f"select * from before_{mart}) as n), (select count(*) from (select * from "
                f"before_{mart} except all select * from dev_marts.{mart}) as b)")[0]
            if now or before:
                out[mart] = (now, before)
        return out

    def close(self) -> None:
        self.conn.close()


class Observer(threading.Thread):
    """A reporter reading every mart in one statement, over and over, while a run goes on:
    the distinct states it saw, in order."""

    def __init__(self, reporter: Reporter) -> None:
        super().__init__(daemon=True)
        self.conn = connect_raw(reporter.endpoint, autocommit=True)
        self.statement = "select " + ", ".join(
            f"(select md5(coalesce(string_agg(t::text, '|' order by t::text), '')) "
            f"from dev_marts.{mart} as t)" for mart in sorted(MARTS))
        self.states: list[tuple] = []
        self.reads = 0
        self.stopping = threading.Event()

    def read(self) -> tuple:
        with self.conn.cursor() as cur:
            cur.execute(self.statement)
            return cur.fetchone()

    def run(self) -> None:
        while not self.stopping.is_set():
            state = self.read()
            self.reads += 1
            if not self.states or self.states[-1] != state:
                self.states.append(state)
            time.sleep(0.05)

    def stop(self) -> list[tuple]:
        self.stopping.set()
        self.join(timeout=30)
        self.conn.close()
        return self.states


@pytest.fixture(scope="module")
def warehouse(settings, elt_env, tmp_path_factory) -> Iterator[tuple[Settings, dict]]:
    """A fresh source and warehouse, a reporter login user, and a first good `elt run`."""
    home = tmp_path_factory.mktemp("wap")
    s, env = fresh(settings, elt_env, home, "wap", scale=0.002)
    env = {**env, "DBT_TARGET_PATH": str(home / "target"), "DBT_LOG_PATH": str(home / "logs")}
    saved = {k: os.environ.get(k) for k in ("DBT_TARGET_PATH", "DBT_LOG_PATH")}
    os.environ.update({k: env[k] for k in saved})  # run_job's dbt writes here, not target/
    admin = connect_raw(s.warehouse, autocommit=True)
    with admin.cursor() as cur:
        for name, options in (("reporter", "nologin"), (REPORTER, 'login in role "reporter"')):
            cur.execute("select from pg_roles where rolname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(f'create role "{name}" {options}')
    admin.close()
    assert job.run_job(s, job.RunOptions(base_delay=0.01), echo=lambda _: None) == 0
    yield s, env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def reporter(warehouse) -> Iterator[Reporter]:
    session = Reporter(warehouse[0])
    assert session.marts() == MARTS
    yield session
    session.close()


def views_read(s: Settings) -> set[str]:
    """The schemas of every relation the views of `marts` read."""
    return {r[0] for r in query(s.warehouse, """
        select distinct t.relnamespace::regnamespace::text from pg_class as v
        join pg_rewrite as r on r.ev_class = v.oid
        join pg_depend as d on d.classid = 'pg_rewrite'::regclass and d.objid = r.oid
            and d.refclassid = 'pg_class'::regclass and d.refobjid <> v.oid
        join pg_class as t on t.oid = d.refobjid
        where v.relnamespace = 'dev_marts'::regnamespace""")}


def copy_state(s: Settings, schema: str) -> str:
    return query(s.warehouse, "select obj_description(%s::regnamespace, 'pg_namespace')::jsonb"
                              " ->> 'state'", (schema,))[0][0]


def publications(s: Settings) -> int:
    return query(s.warehouse, "select count(*) from quality.mart_publications")[0][0]


def assert_published_together(s: Settings, reporter: Reporter, before: Publication,
                              count_before: int) -> Publication:
    """One new publication, of this run's build, listing every mart; every view reads the
    live copy; and what the reporter reads holds together across marts."""
    after = last_publication(s.warehouse, s.env)
    assert after is not None and after.built_by != before.built_by
    assert after.built_by == build_invocation(), "the run's own build was published"
    assert publications(s) == count_before + 1, "one publish, so one transaction"
    assert set(after.marts) == MARTS
    assert views_read(s) == {"dev_marts_live"}
    assert copy_state(s, "dev_marts_live") == "live" and copy_state(s, "dev_marts_build") == "stale"
    mismatched = reporter.rows("""
        select count(*) from dev_marts.daily_revenue as d
        full join (select ordered_date, count(*) as orders from dev_marts.fct_orders
                   group by ordered_date) as f on f.ordered_date = d.revenue_date
        where d.order_count is distinct from f.orders""")[0][0]
    assert mismatched == 0, "daily_revenue and fct_orders are of one build"
    return after


def bad_order(s: Settings) -> None:
    """A new order with a status the `accepted_values` test of fct_orders (severity error)
    rejects; staging only warns about it, so it reaches the mart."""
    _execute(s.source, f"""
        insert into marketplace.orders (order_id, customer_id, status, ordered_at,
                                        shipping_state, total_amount)
        select {BAD_ORDER}, min(customer_id), 'teleported', now() - interval '1 hour', 'CA', 10
        from marketplace.customers""")


def test_a_failed_mart_test_publishes_nothing_and_the_next_good_run_publishes_every_mart(
    warehouse, reporter
):
    s, _ = warehouse
    before = last_publication(s.warehouse, s.env)
    count = publications(s)
    assert before is not None and views_read(s) == {"dev_marts_live"}
    # the reporter reads the views, never the copies behind them
    for copy in ("dev_marts_live", "dev_marts_build"):
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            reporter.rows(f"select count(*) from {copy}.fct_orders")
    reporter.keep()
    simulator.advance(s.source, 1)
    bad_order(s)

    watching = Observer(reporter)
    watching.start()
    printed: list[str] = []
    assert job.run_job(s, job.RunOptions(base_delay=0.01), echo=printed.append) == 1
    seen = watching.stop()

    run = query(s.warehouse, "select status, summary from ops.pipeline_runs "
                             "order by started_at desc limit 1")[0]
    assert run[0] == "failed"
    assert run[1]["tasks"]["dbt_build"]["status"] == "failed"
    failed_tests = query(s.warehouse, """
        select r.node_name, r.severity from quality.dbt_results as r
        where r.status = 'fail' and r.invocation_id = (
            select invocation_id from quality.dbt_invocations where command = 'build'
            order by finished_at desc limit 1)""")
    assert [(name[:39], severity) for name, severity in failed_tests] == [
        ("accepted_values_fct_orders_order_status", "error")], failed_tests
    assert run[1]["tasks"]["publish"]["status"] == "skipped"
    assert any("marts: not published" in line for line in printed), printed
    # the build wrote its marts, bad order included, into the copy nobody reads ...
    assert query(s.warehouse, "select order_status from dev_marts_build.fct_orders "
                              "where order_id = %s", (BAD_ORDER,)) == [("teleported",)]
    assert copy_state(s, "dev_marts_build") == "failed"
    # ... and every mart the reporter reads returns exactly what it returned before
    assert reporter.changed() == {}
    assert len(seen) == 1 and watching.reads > 0, "nothing changed while the build ran"
    assert last_publication(s.warehouse, s.env) == before and publications(s) == count

    # the cause fixed at the source, the next run publishes the day, every mart at once
    _execute(s.source, f"update marketplace.orders set status = 'delivered' "
                       f"where order_id = {BAD_ORDER}")
    watching = Observer(reporter)
    watching.start()
    printed = []
    assert job.run_job(s, job.RunOptions(base_delay=0.01), echo=printed.append) == 0, printed
    seen = watching.stop()
    assert any("tested every row" in line for line in printed), printed
    after = assert_published_together(s, reporter, before, count)
    assert any(f"reporters read the build of {str(after.built_at)[:19]}" in line
               for line in printed), printed
    assert reporter.rows(f"select order_status from dev_marts.fct_orders where order_id = "
                         f"{BAD_ORDER}") == [("delivered",)]
    changed = reporter.changed()
    assert {"fct_orders", "fct_order_items", "fct_payments", "daily_revenue"} <= set(changed)
    assert all(now > 0 for now, _ in changed.values())
    # a reader saw the marts of the old build, then those of the new one: never a mix
    assert len(seen) == 2, f"{len(seen)} states in {watching.reads} reads"


def wait_for(condition, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_build_killed_mid_way_publishes_nothing_and_the_next_run_publishes_every_mart(
    warehouse, reporter
):
    s, env = warehouse
    before = last_publication(s.warehouse, s.env)
    count = publications(s)
    reporter.keep()
    simulator.advance(s.source, 1)
    live_built = query(s.warehouse,
                       "select max(_validated_at) from dev_marts_live.fct_orders")[0][0]

    # daily_revenue (after fct_orders and its tests) cannot be swapped in while this
    # transaction holds it: the build stops there, half-way through the marts
    holder = connect_raw(s.warehouse)
    holder.cursor().execute("lock table dev_marts_build.daily_revenue in access exclusive mode")
    watching = Observer(reporter)
    watching.start()
    run = subprocess.Popen([sys.executable, "-m", "loader.cli", "run"],
                           env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: query(s.warehouse, "select count(*) from pg_locks where not granted "
                               "and relation = 'dev_marts_build.daily_revenue'::regclass")[0][0],
                 "the build to reach daily_revenue")
        builds = [p for p in psutil.Process(run.pid).children(recursive=True)
                  if "build" in p.cmdline() and "freshness" not in p.cmdline()]
        assert len(builds) == 1, [p.cmdline() for p in builds]
        # the build already wrote the new day's facts into the build copy
        assert query(s.warehouse,
                     "select max(_validated_at) from dev_marts_build.fct_orders")[0][0] > live_built
        builds[0].send_signal(signal.SIGKILL)
    finally:
        holder.rollback()
        holder.close()
    _, err = run.communicate(timeout=300)
    seen = watching.stop()
    assert run.returncode == 1, err[-3000:]
    wait_for(lambda: query(s.warehouse, "select count(*) from pg_locks where relation = "
                           "'dev_marts_build.daily_revenue'::regclass")[0][0] == 0,
             "the killed build's sessions to end", timeout=60)

    assert reporter.changed() == {}
    assert len(seen) == 1 and watching.reads > 0, "nothing changed while the build ran"
    assert last_publication(s.warehouse, s.env) == before and publications(s) == count
    assert copy_state(s, "dev_marts_build") == "building", "killed before its end"
    # a dbt user cannot publish what the killed build left either
    refused = run_dbt(s, "run-operation", "publish_marts", check=False)
    assert refused.returncode != 0 and "is running or was killed" in refused.stdout, \
        refused.stdout[-2000:]
    assert last_publication(s.warehouse, s.env) == before

    watching = Observer(reporter)
    watching.start()
    assert job.run_job(s, job.RunOptions(base_delay=0.01), echo=lambda _: None) == 0
    seen = watching.stop()
    assert_published_together(s, reporter, before, count)
    changed = reporter.changed()
    assert {"fct_orders", "daily_revenue"} <= set(changed)
    assert len(seen) == 2, f"{len(seen)} states in {watching.reads} reads: never a mix"


def test_copies_that_take_turns_equal_a_full_refresh(warehouse):
    """Each build writes the copy that is not live, whose incremental facts lag one build:
    a customer quarantined and bids deleted while the other copy was built are applied from
    the copy's own state (its newest _validated_at, its tombstones) when its turn comes."""
    s, _ = warehouse
    customer = query(s.warehouse, "select customer_id from dev_marts.fct_orders "
                                  "group by customer_id order by count(*) desc limit 1")[0][0]
    bids = query(s.warehouse, "select bid_id from dev_marts.fct_bids order by bid_id limit 3")
    _execute(s.source, f"update marketplace.customers set email = 'not an email' "
                       f"where customer_id = {customer}")
    _execute(s.source, "delete from marketplace.bids where bid_id in "
                       f"({', '.join(str(b[0]) for b in bids)})")
    # copy A catches up
    assert job.run_job(s, job.RunOptions(base_delay=0.01), echo=lambda _: None) == 0
    lagging = query(s.warehouse, "select count(*) from dev_marts_build.fct_orders "
                                 "where customer_id = %s", (customer,))[0][0]
    assert lagging > 0, "the copy now being built has not seen the change yet"
    simulator.advance(s.source, 1)
    # copy B, one behind
    assert job.run_job(s, job.RunOptions(base_delay=0.01), echo=lambda _: None) == 0
    for sql in ("select count(*) from dev_marts.fct_orders where customer_id = %s",
                "select count(*) from dev_marts.fct_order_items where customer_id = %s"):
        assert query(s.warehouse, sql, (customer,)) == [(0,)], sql
    assert query(s.warehouse, "select count(*) from dev_marts.fct_bids where bid_id = any(%s)",
                 ([b[0] for b in bids],)) == [(0,)]
    incremental = marts_fingerprint(s)
    run_dbt(s, "build", "--full-refresh", "--vars", dbt.DBT_VARS)  # publishes at its end
    assert marts_fingerprint(s) == incremental, "the marts differ from a full refresh"


def test_a_build_that_leaves_publishing_to_later_is_published_by_the_run(warehouse, monkeypatch):
    """With var publish_on_build false the build only marks its copy built; the run's
    `publish` task then publishes it with `dbt run-operation publish_marts`."""
    s, _ = warehouse
    before = last_publication(s.warehouse, s.env)
    simulator.advance(s.source, 1)
    monkeypatch.setattr(tasks, "BUILD_VARS", json.dumps(
        {**json.loads(dbt.BUILD_VARS), "publish_on_build": False}))
    commands: list[str] = []
    real = tasks.run_dbt

    def recorded(settings, *args, **kwargs):
        commands.append(args[0])
        return real(settings, *args, **kwargs)

    monkeypatch.setattr(tasks, "run_dbt", recorded)  # the build
    monkeypatch.setattr(dbt, "run_dbt", recorded)  # the publish and the freshness
    assert job.run_job(s, job.RunOptions(base_delay=0.01), echo=lambda _: None) == 0
    assert sorted(commands) == ["build", "run-operation", "source"]
    built = query(s.warehouse, "select invocation_id from quality.dbt_invocations "
                               "where command = 'build' order by finished_at desc limit 1")[0][0]
    after = last_publication(s.warehouse, s.env)
    assert after is not None and after.built_by == built != before.built_by
    assert views_read(s) == {"dev_marts_live"} and copy_state(s, "dev_marts_build") == "stale"
