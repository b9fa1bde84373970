"""The dbt project end to end on the embedded PostgreSQL: quarantine, late rows, snapshots."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg2
import pytest

from loader.config import PROJECT_ROOT, Endpoint, Settings, dbt_environment
from loader.db import connect_raw
from loader.extract.pipeline import run_load
from loader.extract.results import LoadResult
from loader.extract.tables import load_config
from loader.source import simulator
from loader.source.simulator import SimConfig
from tests.conftest import SIM_END, private_settings, query

pytestmark = pytest.mark.slow

DBT = Path(sys.executable).parent / "dbt"
SCALE = 0.005
DIRTY_RATE = 0.05
KEYS = {
    "customers": "customer_id",
    "products": "product_id",
    "orders": "order_id",
    "order_items": "order_item_id",
    "payments": "payment_id",
    "bids": "bid_id",
}
FACTS = {
    "dev_marts.fct_orders": "order_id",
    "dev_marts.fct_order_items": "order_item_id",
    "dev_marts.fct_payments": "payment_id",
    "dev_marts.fct_bids": "bid_id",
    "dev_marts.daily_revenue": "revenue_date",
    "dev_marts.monthly_active_users": "activity_month",
    # the incremental intermediate layer the facts are built from
    **{f"dev_intermediate.int_{table}_validated": key for table, key in KEYS.items()},
}
# a customer added to the source only to be deleted later (snapshot hard-delete handling)
DOOMED_CUSTOMER = 900_001


@dataclasses.dataclass(frozen=True)
class Project:
    settings: Settings
    env: dict[str, str]

    @property
    def source(self) -> Endpoint:
        return self.settings.source

    @property
    def warehouse(self) -> Endpoint:
        return self.settings.warehouse

    def dbt(self, *args: str) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(DBT), *args], cwd=PROJECT_ROOT, env=self.env, capture_output=True, text=True
        )
        assert result.returncode == 0, f"dbt {' '.join(args)} failed:\n{result.stdout[-6000:]}"
        return result

    def publish(self) -> subprocess.CompletedProcess:
        """What `dbt build` does at its end, after a `dbt run` (which tests nothing, so does
        not publish): the marts it built become what `marts.<mart>` reads."""
        return self.dbt("run-operation", "publish_marts")

    def load(self) -> LoadResult:
        """The real loader: changed and new rows get a fresh _loaded_at, deletes go away."""
        result = run_load(self.settings, load_config(self.settings.tables_config))
        assert all(r.reconciled for r in result.tables.values()), result
        return result

    def scalar(self, sql: str, params=None):
        return query(self.warehouse, sql, params)[0][0]


@pytest.fixture(scope="module")
def loaded_project(settings: Settings, tmp_path_factory) -> Iterator[Project]:
    """A dirty source at a small scale, loaded by the real loader into a fresh warehouse."""
    local = private_settings(settings, "dbt", tmp_path_factory.mktemp("dbt-home"))
    simulator.init(
        local.source, SimConfig(scale=SCALE, seed=11, dirty_rate=DIRTY_RATE, end_date=SIM_END)
    )
    query_commit(
        local.source,
        "insert into marketplace.customers (customer_id, email, first_name, last_name,"
        " state, registered_at) values (%s, 'doomed@example.com', 'Doomed', 'Customer',"
        " 'CA', now() - interval '1 day')",
        (DOOMED_CUSTOMER,),
    )
    project = Project(local, private_dbt_env(local, tmp_path_factory.mktemp("dbt")))
    project.load()
    yield project


def private_dbt_env(local: Settings, work: Path, target: str = "target") -> dict[str, str]:
    """dbt's environment for `local`, with its target and logs in `work` (not the project's,
    which other tests and engineers use)."""
    return {
        **os.environ,
        **dbt_environment(local),
        "DBT_TARGET_PATH": str(work / target),
        "DBT_LOG_PATH": str(work / "logs"),
        "ELT_DBT_THREADS": "2",
    }


def query_commit(endpoint: Endpoint, sql: str, params=None) -> None:
    conn = connect_raw(endpoint)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, params)
    finally:
        conn.close()


@pytest.fixture(scope="module")
def built(loaded_project: Project) -> Project:
    loaded_project.dbt("build")
    return loaded_project


def fact_hashes(project: Project) -> dict[str, tuple[int, str]]:
    """Row count and a digest of every row, without _validated_at (when a build wrote it)."""
    out = {}
    for table, key in FACTS.items():
        count, digest = query(
            project.warehouse,
            "select count(*), md5(coalesce(string_agg((to_jsonb(t) - '_validated_at')::text,"
            f" '|' order by {key}), '')) from {table} as t",
        )[0]
        out[table] = (count, digest)
    return out


@pytest.fixture(scope="module")
def late_orders(built: Project) -> dict:
    """Three days after the newest order, orders dated three days back arrive; a customer
    moves, a product changes price and the doomed customer is deleted. Then load + build."""
    p = built
    newest = query(p.source, "select max(ordered_at) from marketplace.orders")[0][0]
    late_day = (newest - timedelta(days=3)).date()
    customer_id = p.scalar("select min(customer_id) from dev_marts.dim_customers")
    product_id, price = query(
        p.warehouse,
        "select product_id, price from dev_marts.dim_products order by product_id limit 1",
    )[0]
    before = p.scalar(
        "select coalesce(sum(revenue), 0) from dev_marts.daily_revenue where revenue_date = %s",
        (late_day,),
    )
    # a product purged from the source while old order items still point at it
    purged = p.scalar(
        "select product_id from dev_marts.fct_order_items where product_id <> %s"
        " group by product_id order by count(*) desc, product_id limit 1",
        (product_id,),
    )
    query_commit(
        p.source,
        """
        with new_orders as (
            insert into marketplace.orders (order_id, customer_id, status, ordered_at,
                                            shipping_state, total_amount)
            select 800000 + n, %(customer)s, 'delivered',
                   %(day)s::timestamptz + interval '10 hours' + n * interval '1 minute',
                   'CA', %(price)s * n
            from generate_series(1, 3) as n
            returning order_id, total_amount
        ), items as (
            insert into marketplace.order_items (order_item_id, order_id, product_id,
                                                 quantity, unit_price)
            select order_id, order_id, %(product)s, (total_amount / %(price)s)::int, %(price)s
            from new_orders
        )
        insert into marketplace.payments (payment_id, order_id, amount, method, status, paid_at)
        select order_id, order_id, total_amount, 'card', 'completed',
               %(day)s::timestamptz + interval '11 hours'
        from new_orders;
        update marketplace.customers set street = '1 Moved St', city = 'Boston'
        where customer_id = %(customer)s;
        update marketplace.products set price = price + 10 where product_id = %(product)s;
        delete from marketplace.customers where customer_id = %(doomed)s;
        delete from marketplace.bids where product_id = %(purged)s;
        delete from marketplace.products where product_id = %(purged)s;
        """,
        {
            "customer": customer_id,
            "product": product_id,
            "price": price,
            "day": late_day,
            "doomed": DOOMED_CUSTOMER,
            "purged": purged,
        },
    )
    p.load()
    # loads seconds apart would all fall inside the default lookback: without it, only what
    # the late load brought is re-read, which is what this proves correct
    p.dbt("build", "--vars", '{"incremental_lookback": "0 seconds"}')
    results = json.loads((Path(p.env["DBT_TARGET_PATH"]) / "run_results.json").read_text())
    inserted = {
        r["unique_id"].rsplit(".", 1)[-1]: r["adapter_response"].get("rows_affected")
        for r in results["results"]
        if r["unique_id"].startswith("model.marketplace.fct_")
    }
    return {
        "inserted": inserted,
        "day": late_day,
        "revenue_before": before,
        "late_revenue": price * 6,
        "customer_id": customer_id,
        "product_id": product_id,
        "purged_product_id": purged,
    }


def test_dbt_build_sets_dirty_rows_aside_with_their_reason(built: Project) -> None:
    reasons = dict(
        query(
            built.warehouse,
            "select table_name || '.' || quarantine_reason, quarantined_rows"
            " from dev_quarantine.int_quarantine_counts",
        )
    )
    for expected in (
        "customers.invalid_email",
        "customers.duplicate_email",
        "products.non_positive_price",
        "order_items.product_not_found",
        "bids.bid_at_or_above_price",
    ):
        assert reasons.get(expected, 0) > 0, f"no {expected} in quarantine: {reasons}"
    # quarantined rows never reach the marts (the build's tests check it too)
    leaked = built.scalar(
        "select count(*) from dev_marts.dim_customers"
        " join dev_quarantine.int_customers_quarantined using (customer_id)"
    )
    assert leaked == 0
    assert built.scalar("select count(*) from dev_marts.dim_products where price <= 0") == 0


def test_raw_equals_clean_plus_quarantined_for_every_table(built: Project) -> None:
    for table in KEYS:
        raw = built.scalar(f"select count(*) from raw_marketplace.{table}")
        clean = built.scalar(f"select count(*) from dev_intermediate.int_{table}_cleaned")
        held = built.scalar(f"select count(*) from dev_quarantine.int_{table}_quarantined")
        assert raw == clean + held, f"{table}: raw {raw} != clean {clean} + quarantined {held}"
        assert held < raw / 5, f"{table}: {held} of {raw} rows quarantined"


def test_source_freshness_passes_after_a_load(built: Project) -> None:
    result = built.dbt("source", "freshness")
    assert "PASS=6" in result.stdout or result.stdout.count("PASS freshness") == 6


def compiled_hooks(target: Path) -> list[str]:
    """The project hooks (on-run-start, on-run-end) as the last invocation into `target`
    rendered them."""
    hooks = target / "compiled" / "marketplace" / "dbt_project.yml" / "hooks"
    return [path.read_text() for path in sorted(hooks.glob("*.sql"))]


def test_concurrent_invocations_never_collide_on_the_project_hooks(
    built: Project, tmp_path: Path
) -> None:
    """`elt run` starts `dbt source freshness` beside its build, and people run dbt by hand.
    Freshness skips the roles and grants, and the hooks that write shared catalog state take
    a transaction-scoped advisory lock: GRANTs on the same catalog rows at once failed with
    "tuple concurrently updated" (on the old hooks: about one round in two of the dbt runs
    below, and half of the hook executions from four sessions below)."""
    commands = [
        ("run", "--select", "stg_marketplace__bids"),  # fires every hook of a build
        ("source", "freshness"),
        ("source", "freshness"),
    ]
    for _ in range(2):
        procs = [
            subprocess.Popen(
                [str(DBT), *args],
                cwd=PROJECT_ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env={
                    **built.env,
                    "DBT_TARGET_PATH": str(tmp_path / f"target{n}"),
                    "DBT_LOG_PATH": str(tmp_path / f"logs{n}"),
                },
            )
            for n, args in enumerate(commands)
        ]
        for proc in procs:
            out = proc.communicate()[0]
            assert "concurrently updated" not in out, out[-3000:]
            assert proc.returncode == 0, f"{' '.join(proc.args[1:])}:\n{out[-3000:]}"
    assert not any("grant " in hook for hook in compiled_hooks(tmp_path / "target1"))

    # the hooks as the build rendered them, from four sessions at once: the collision made
    # likely instead of left to timing
    hooks = compiled_hooks(tmp_path / "target0")
    assert len(hooks) == 5 and any("grant " in hook for hook in hooks)
    errors: list[str] = []

    def session() -> None:
        conn = connect_raw(built.warehouse, autocommit=True)
        try:
            with conn.cursor() as cur:
                for _ in range(5):
                    for hook in hooks:
                        try:
                            cur.execute(hook)
                        except psycopg2.Error as exc:
                            errors.append(str(exc).strip())
        finally:
            conn.close()

    sessions = [threading.Thread(target=session) for _ in range(4)]
    for thread in sessions:
        thread.start()
    for thread in sessions:
        thread.join()
    assert errors == []


def test_unit_tests_run_and_pass(built: Project) -> None:
    result = built.dbt("test", "--select", "test_type:unit")
    assert "PASS=" in result.stdout and "ERROR=0" in result.stdout


def test_late_orders_land_on_their_business_day(late_orders: dict, built: Project) -> None:
    after = built.scalar(
        "select revenue from dev_marts.daily_revenue where revenue_date = %s", (late_orders["day"],)
    )
    assert after - late_orders["revenue_before"] == late_orders["late_revenue"]
    rows = query(
        built.warehouse,
        "select ordered_date from dev_marts.fct_orders where order_id between 800001 and 800003",
    )
    assert [r[0] for r in rows] == [late_orders["day"]] * 3


def test_deleted_bids_leave_the_validated_table_and_the_facts(late_orders: dict, built) -> None:
    # the purged product's bids were deleted in the source: the loader left a tombstone per
    # key (ops.raw_deletes), and the increment deleted those keys downstream
    tombstoned = built.scalar(
        "select count(distinct row_key) from ops.raw_deletes where table_name = 'bids'"
    )
    assert tombstoned > 0
    for relation in ("dev_intermediate.int_bids_validated", "dev_marts.fct_bids"):
        left = built.scalar(
            f"select count(*) from {relation} where bid_id in "
            "(select row_key from ops.raw_deletes where table_name = 'bids')"
        )
        assert left == 0, f"{relation} still holds deleted bids"


def test_incremental_facts_equal_a_full_refresh(late_orders: dict, built: Project) -> None:
    orders = built.scalar("select count(*) from dev_marts.fct_orders")
    assert 3 <= late_orders["inserted"]["fct_orders"] < orders / 10, late_orders["inserted"]
    incremental = fact_hashes(built)
    built.dbt("run", "--full-refresh", "--select", "intermediate", "marts")
    built.publish()
    assert fact_hashes(built) == incremental


def test_a_purged_product_takes_its_old_items_out_of_the_facts(late_orders: dict, built) -> None:
    # the product is gone from its validated table: only its snapshot's closed version tells
    # the increment to re-validate the items that still point at it
    purged = late_orders["purged_product_id"]
    reasons = query(
        built.warehouse,
        "select distinct quarantine_reason from dev_quarantine.int_order_items_quarantined"
        " where product_id = %s",
        (purged,),
    )
    assert ("product_not_found",) in reasons  # (an earlier rule may have caught a line first)
    for relation in ("dev_intermediate.int_order_items_cleaned", "dev_marts.fct_order_items"):
        left = built.scalar(f"select count(*) from {relation} where product_id = %s", (purged,))
        assert left == 0, f"{relation} still has items of the purged product"


def test_snapshots_version_changes_and_close_deleted_rows(late_orders: dict, built) -> None:
    versions = query(
        built.warehouse,
        "select city, is_current, valid_to is null from dev_marts.dim_customers_history"
        " where customer_id = %s order by valid_from",
        (late_orders["customer_id"],),
    )
    assert len(versions) == 2
    assert versions[0][1:] == (False, False) and versions[1] == ("Boston", True, True)
    prices = query(
        built.warehouse,
        "select price, is_current from dev_marts.dim_products_history where product_id = %s"
        " order by valid_from",
        (late_orders["product_id"],),
    )
    assert len(prices) == 2 and prices[1][0] == prices[0][0] + 10 and prices[1][1]
    doomed = query(
        built.warehouse,
        "select is_current, is_deleted from dev_marts.dim_customers_history where customer_id = %s",
        (DOOMED_CUSTOMER,),
    )
    assert doomed == [(False, True)]


def can_read(endpoint: Endpoint, role: str, table: str) -> bool:
    conn = connect_raw(endpoint)
    try:
        with conn.cursor() as cur:
            cur.execute(f"set role {role}")
            cur.execute(f"select count(*) from {table}")
            return True
    except psycopg2.errors.InsufficientPrivilege:
        return False
    finally:
        conn.rollback()
        conn.close()


def test_roles_get_least_privilege(built: Project) -> None:
    wh = built.warehouse
    raw, staged = "raw_marketplace.orders", "dev_staging.stg_marketplace__orders"
    held, mart = "dev_quarantine.int_orders_quarantined", "dev_marts.fct_orders"
    assert can_read(wh, "reporter", mart)
    assert not any(can_read(wh, "reporter", t) for t in (raw, staged, held))
    assert can_read(wh, "loader", raw)
    assert not any(can_read(wh, "loader", t) for t in (staged, held, mart))
    assert all(can_read(wh, "transformer", t) for t in (raw, staged, held, mart))


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def rendered_text(page: str) -> str:
    """The visible text of a page after headless chromium ran its scripts."""
    dom = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=20000",
            "--dump-dom",
            page,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


def test_docs_site_has_lineage_from_sources_to_marts(built: Project) -> None:
    built.dbt("docs", "generate", "--static")
    target = Path(built.env["DBT_TARGET_PATH"])
    manifest = json.loads((target / "manifest.json").read_text())
    chain = [
        "source.marketplace.marketplace.orders",
        "model.marketplace.stg_marketplace__orders",
        "model.marketplace.int_orders_validated",
        "model.marketplace.int_orders_cleaned",
        "model.marketplace.fct_orders",
        "model.marketplace.daily_revenue",
    ]
    for parent, child in itertools.pairwise(chain):
        assert child in manifest["child_map"][parent], f"{parent} -> {child} missing"
    if CHROMIUM is None:
        pytest.skip("chromium is not installed: the rendering check needs it")
    page = (target / "static_index.html").as_uri() + "#!/model/model.marketplace.fct_orders"
    text = rendered_text(page)
    assert "Depends On" in text and "int_orders_cleaned" in text
    assert "Contract Enforced" in text


def test_an_increment_tests_the_rows_it_changed_and_still_catches_a_bad_one(
    late_orders: dict, built: Project
) -> None:
    """With the var test_since (what `elt run` passes after a successful build), the row-by-row
    tests read only the rows loaded or rebuilt since; a bad new row still fails them.
    (Runs last among the data tests: it leaves an order with an unknown status behind.)"""
    since = built.scalar("select max(_loaded_at) from raw_marketplace.orders")
    query_commit(
        built.source,
        "insert into marketplace.orders (order_id, customer_id, status, ordered_at,"
        " shipping_state, total_amount) values (800100, %s, 'teleported', now(), 'CA', 1)",
        (late_orders["customer_id"],),
    )
    built.load()
    env = built.env
    # `elt run` names the previous build (var test_since: previous_build) and the macro reads
    # its start from the run history: the same scope as the timestamp given by hand
    query_commit(
        built.warehouse,
        "insert into ops.pipeline_runs (run_id, status, summary) values"
        " ('test-previous-build', 'success', jsonb_build_object('dbt_built_at', %s::text))",
        (since.isoformat(),),
    )
    try:
        for test_since in (since.isoformat(), "previous_build"):
            scoped = subprocess.run(
                [str(DBT), "test", "--select", "stg_marketplace__orders",
                 "--vars", json.dumps({"test_since": test_since})],
                cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
            )
            assert scoped.returncode == 0, scoped.stdout[-3000:]  # the status test warns
            target = Path(env["DBT_TARGET_PATH"])
            results = json.loads((target / "run_results.json").read_text())
            flagged = {r["unique_id"].split(".")[2]: r["failures"] for r in results["results"]
                       if r["failures"]}
            assert flagged == {
                "accepted_values_stg_marketplace__orders_order_status__pending__paid__shipped"
                "__delivered__cancelled__returned": 1
            }, test_since
            compiled = next((target / "compiled").rglob(
                "not_null_stg_marketplace__orders_order_id.sql")).read_text()
            assert f"_loaded_at > '{since.isoformat()}'" in compiled, test_since
    finally:
        query_commit(built.warehouse,
                     "delete from ops.pipeline_runs where run_id = 'test-previous-build'")


def test_sqlfluff_lint_is_clean(built: Project) -> None:
    """The dbt templater compiles against a live warehouse, hence a test with the server."""
    sqlfluff = Path(sys.executable).parent / "sqlfluff"
    result = subprocess.run(
        [str(sqlfluff), "lint", "models", "macros", "snapshots", "tests/dbt", "analyses"],
        cwd=PROJECT_ROOT,
        env=built.env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def facts_from(project: Project, first_key: int) -> list[tuple[str, int]]:
    """The orders, payments and bids in the facts from `first_key` on."""
    return query(
        project.warehouse,
        "select 'orders', order_id from dev_marts.fct_orders where order_id >= %(k)s union all"
        " select 'payments', payment_id from dev_marts.fct_payments where payment_id >= %(k)s"
        " union all select 'bids', bid_id from dev_marts.fct_bids where bid_id >= %(k)s"
        " order by 1, 2",
        {"k": first_key},
    )


def test_rows_dated_in_the_future_stay_out_of_the_marts(built: Project) -> None:
    """Business dates of year 9999 or 'infinity' opened days in daily_revenue thousands of
    years away (and switched the anomaly monitors to "skipped"): the rows are quarantined as
    date_in_future, their payments follow the order, and raw = clean + quarantined holds. A
    row only a little ahead is checked again at every increment and leaves quarantine once it
    is no longer ahead of the build (here: a wider tolerance)."""
    customer = built.scalar("select min(customer_id) from dev_marts.dim_customers")
    product, bidder = query(
        built.warehouse,
        "select product_id, bidder_id from dev_marts.fct_bids order by bid_id limit 1",
    )[0]
    query_commit(
        built.source,
        """
        insert into marketplace.orders (order_id, customer_id, status, ordered_at,
                                        shipping_state, total_amount)
        values (820001, %(customer)s, 'delivered', '9999-12-31 00:00:00+00', 'CA', 10),
               (820002, %(customer)s, 'delivered', 'infinity', 'CA', 10),
               (820003, %(customer)s, 'delivered', now() + interval '2 hours', 'CA', 10),
               (820004, %(customer)s, 'delivered', now() - interval '1 day', 'CA', 10);
        insert into marketplace.payments (payment_id, order_id, amount, method, status, paid_at)
        values (820001, 820001, 10, 'card', 'completed', now()),
               (820002, 820002, 10, 'card', 'completed', now()),
               (820003, 820003, 10, 'card', 'completed', now() + interval '2 hours'),
               (820004, 820004, 10, 'card', 'completed', 'infinity');
        insert into marketplace.bids (bid_id, product_id, bidder_id, amount, placed_at, status)
        values (820001, %(product)s, %(bidder)s, 0.01, '9999-12-31 00:00:00+00', 'active');
        """,
        {"customer": customer, "product": product, "bidder": bidder},
    )
    built.load()
    # models only: an earlier test left a row its tests reject on purpose
    built.dbt("run", "--vars", '{"incremental_lookback": "0 seconds"}')
    built.publish()
    held = {
        (table, key): reason
        for table, key_column in (("orders", "order_id"), ("payments", "payment_id"),
                                  ("bids", "bid_id"))
        for key, reason in query(
            built.warehouse,
            f"select {key_column}, quarantine_reason from dev_quarantine.int_{table}_quarantined"
            f" where {key_column} between 820001 and 820004",
        )
    }
    assert held == {
        ("orders", 820001): "date_in_future",
        ("orders", 820002): "date_in_future",
        ("orders", 820003): "date_in_future",
        ("payments", 820001): "order_quarantined",
        ("payments", 820002): "order_quarantined",
        ("payments", 820003): "date_in_future",
        ("payments", 820004): "date_in_future",
        ("bids", 820001): "date_in_future",
    }
    for mart, day in (
        ("daily_revenue", "revenue_date"),
        ("monthly_active_users", "activity_month"),
    ):
        ahead = built.scalar(
            f"select count(*) from dev_marts.{mart} where {day} > current_date + 1"
        )
        assert ahead == 0, f"{mart} has days in the future"
    assert facts_from(built, 820001) == [("orders", 820004)]  # the one clean order
    for table in ("orders", "payments", "bids"):
        raw = built.scalar(f"select count(*) from raw_marketplace.{table}")
        clean = built.scalar(f"select count(*) from dev_intermediate.int_{table}_cleaned")
        quarantined = built.scalar(f"select count(*) from dev_quarantine.int_{table}_quarantined")
        assert raw == clean + quarantined, f"{table}: {raw} != {clean} + {quarantined}"

    # nothing was loaded since: only the re-check of the rows dated in the future frees them
    built.dbt(
        "run", "--vars", '{"incremental_lookback": "0 seconds", "future_date_tolerance": "3 hours"}'
    )
    built.publish()
    assert facts_from(built, 820001) == [
        ("orders", 820003),
        ("orders", 820004),
        ("payments", 820003),
    ]


def test_an_order_repaired_out_of_raw_sets_its_lines_aside(built: Project) -> None:
    """The source deleted an order with its lines; a timestamp cursor cannot see that, so
    `elt reconcile --deep orders` removes it from raw and leaves a tombstone. The next
    increment takes the order out of the facts and re-validates its lines, still in raw,
    into quarantine: they point at an order that no longer exists."""
    from loader.extract import repair

    order_id = built.scalar(
        "select o.order_id from dev_marts.fct_orders o where exists (select from "
        "dev_marts.fct_payments p where p.order_id = o.order_id) and exists (select from "
        "dev_marts.fct_order_items i where i.order_id = o.order_id) order by o.order_id limit 1"
    )
    query_commit(
        built.source,
        "delete from marketplace.payments where order_id = %(o)s;"
        "delete from marketplace.order_items where order_id = %(o)s;"
        "delete from marketplace.orders where order_id = %(o)s;",
        {"o": order_id},
    )
    config = load_config(built.settings.tables_config)
    repaired = repair.deep_reconcile(built.settings, config, tables=["orders"])
    assert [d.table for d in repaired] == ["orders"]
    # models only: an earlier test left a row its tests reject on purpose
    built.dbt("run", "--vars", '{"incremental_lookback": "0 seconds"}')
    built.publish()
    gone = built.scalar(
        "select count(*) from dev_marts.fct_orders where order_id = %s", (order_id,)
    )
    assert gone == 0
    for table in ("order_items", "payments"):
        clean = built.scalar(
            f"select count(*) from dev_marts.fct_{table} where order_id = %s", (order_id,)
        )
        assert clean == 0, f"fct_{table} still holds lines of the removed order"
        reasons = query(
            built.warehouse,
            f"select distinct quarantine_reason from dev_quarantine.int_{table}_quarantined "
            "where order_id = %s",
            (order_id,),
        )
        assert reasons == [("order_not_found",)], reasons
