"""elementary's monitors, as the project configures them on its raw sources
(models/staging/marketplace/_marketplace__sources.yml), run by dbt on PostgreSQL over 62
days of daily loads: the injected faults (a volume drop, a stopped table, a shifted status
mix, a spike of null emails, an outlying amount) are flagged on the days they happen; the
same history without them raises nothing."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from loader.config import PROJECT_ROOT, Settings, dbt_schema
from loader.db import connect_raw
from tests.conftest import create_database, query
from tests.integration.test_dbt_project import private_dbt_env

pytestmark = pytest.mark.slow

DBT = Path(sys.executable).parent / "dbt"
LAST = date(2026, 6, 30)  # the last complete load day; elementary's clock is the next midnight
DAYS = 62
CLOCK = {"custom_run_started_at": f"{LAST + timedelta(days=1)}T00:00:00"}


def loads(base: int, weekend: bool = True) -> str:
    """Each day's load of about `base` rows (half as many more at weekends, unless not
    `weekend`), as the rows of FROM: l.loaded_at is its stamp."""
    busier = "l.weekend" if weekend else "false"
    return ("(select pg_temp.stamp(load_day) as loaded_at, load_day, weekend from loads) as l,"
            f" lateral pg_temp.rows_of(l.load_day, {base}, {busier}) as n")


def drawn(base: int) -> str:
    """The same with a random draw `r` per row, which picks its category."""
    return f"(select random() as r, l.loaded_at from {loads(base)}) as s"


# One load a day per table, stamped once (as the loader stamps _loaded_at), soon after
# 01:00; its rows are the previous day's activity. Volumes a little noisy, busier at weekends.
HISTORY = f"""
create schema raw_marketplace;
select setseed(0.42);
create temp table loads as
select d::date as load_day, extract(isodow from d) >= 6 as weekend
from generate_series(%(start)s::timestamptz, %(last)s::timestamptz, interval '1 day') as d;
create function pg_temp.stamp(day date) returns timestamptz language sql volatile as
    $$ select day + interval '1 hour' + random() * interval '30 minutes' $$;
create function pg_temp.rows_of(day date, base int, weekend boolean) returns setof int
    language sql volatile as
    $$ select generate_series(1, (base * case when weekend then 1.5 else 1 end
                                  * (0.95 + random() * 0.1))::int) $$;
create table raw_marketplace.customers as
select row_number() over () as customer_id,
       case when random() < 0.02 then null else 'c' || (random() * 1e6)::int || '@x.com' end
           as email, loaded_at as _loaded_at
from {loads(120, weekend=False)};
create table raw_marketplace.products as
select row_number() over () as product_id, round((5 + random() * 495)::numeric, 2) as price,
       loaded_at as _loaded_at
from {loads(40, weekend=False)};
create table raw_marketplace.orders as
select row_number() over () as order_id,
       case when r < 0.7 then 'delivered' when r < 0.85 then 'shipped'
            when r < 0.95 then 'cancelled' else 'returned' end as status,
       round((20 + random() * 180)::numeric, 2) as total_amount, loaded_at as _loaded_at
from {drawn(300)};
create table raw_marketplace.order_items as
select row_number() over () as order_item_id, round((5 + random() * 95)::numeric, 2) as unit_price,
       loaded_at as _loaded_at
from {loads(600)};
create table raw_marketplace.payments as
select row_number() over () as payment_id, round((20 + random() * 180)::numeric, 2) as amount,
       case when r < 0.6 then 'card' when r < 0.85 then 'paypal' else 'bank_transfer' end
           as method, loaded_at as _loaded_at
from {drawn(280)};
create table raw_marketplace.bids as
select row_number() over () as bid_id, round((5 + random() * 95)::numeric, 2) as amount,
       loaded_at as _loaded_at
from {loads(72)};
"""

FAULTS = """
-- the load of the day before the last brings half the orders
delete from raw_marketplace.orders
where _loaded_at::date = %(last)s::date - 1 and order_id %% 2 = 0;
-- a spike in null emails on the last load
update raw_marketplace.customers set email = null
where _loaded_at::date = %(last)s and customer_id %% 4 = 0;
-- a shifted status mix on the last two loads: a third of the deliveries become cancellations
update raw_marketplace.orders set status = 'cancelled'
where _loaded_at::date >= %(last)s::date - 1 and status = 'delivered' and order_id %% 3 = 1;
-- an amount far outside anything seen, on the last load
update raw_marketplace.orders set total_amount = 9999999
where order_id = (select max(order_id) from raw_marketplace.orders
                  where _loaded_at::date = %(last)s);
-- the bids stop: no load on the last two days
delete from raw_marketplace.bids where _loaded_at::date >= %(last)s::date - 1;
"""


def build(settings: Settings, name: str, faults: bool) -> Settings:
    create_database(settings, name)
    local = dataclasses.replace(settings, warehouse=settings.warehouse.with_database(name))
    conn = connect_raw(local.warehouse)
    try:
        with conn.cursor() as cur:
            cur.execute("set time zone 'UTC'")
            params = {"start": LAST - timedelta(days=DAYS - 1), "last": LAST}
            cur.execute(HISTORY, params)
            if faults:
                cur.execute(FAULTS, params)
        conn.commit()
    finally:
        conn.close()
    return local


def monitor(local: Settings, work: Path) -> dict[str, str]:
    """elementary's tables, then every test on the raw sources (monitors, keys): the newest
    status of each test, by its short name and table (and column)."""
    env = {**private_dbt_env(local, work), "TZ": "UTC"}

    def dbt(*args: str) -> None:
        done = subprocess.run([str(DBT), *args], cwd=PROJECT_ROOT, env=env,
                              capture_output=True, text=True)
        assert done.returncode in (0, 1), done.stdout[-4000:]

    dbt("run", "--select", "elementary")
    dbt("test", "--select", "source:marketplace", "--indirect-selection", "cautious",
        "--vars", json.dumps(CLOCK))
    results = f'"{dbt_schema(local.env, "elementary")}".elementary_test_results'
    rows = query(
        local.warehouse,
        f"""select r.test_unique_id, r.test_short_name, r.table_name,
                   coalesce(r.column_name, ''), r.status
            from {results} as r
            join (select distinct on (test_unique_id) test_unique_id, invocation_id
                  from {results}
                  order by test_unique_id, detected_at desc) as newest
                using (test_unique_id, invocation_id)""",
    )
    # a column monitor writes one row per metric: the test's status is the worst of them
    worst: dict[str, str] = {}
    for _, test, table, col, status in rows:
        key = f"{test}:{table}" + (f".{col}" if col else "")
        worst[key] = status if worst.get(key, "pass") == "pass" else worst[key]
    return worst


@pytest.fixture(scope="module")
def clean(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    local = build(settings, "quality_clean_history", faults=False)
    return monitor(local, tmp_path_factory.mktemp("clean-dbt"))


@pytest.fixture(scope="module")
def faulty(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    local = build(settings, "quality_faulty_history", faults=True)
    return monitor(local, tmp_path_factory.mktemp("faulty-dbt"))


def test_the_clean_history_raises_nothing(clean: dict[str, str]) -> None:
    monitors = {k: s for k, s in clean.items() if k.split(":")[0] in (
        "volume_anomalies", "freshness_anomalies", "column_anomalies", "dimension_anomalies",
        "schema_changes")}
    # six tables: volume, freshness, schema; five amounts and one email; two mixes
    assert len(monitors) == 6 * 3 + 6 + 2
    assert {k: s for k, s in clean.items() if s != "pass"} == {}


def test_a_load_with_half_the_orders_is_flagged(faulty: dict[str, str]) -> None:
    assert faulty["volume_anomalies:orders"] == "warn"


def test_a_stopped_table_is_flagged(faulty: dict[str, str]) -> None:
    assert faulty["freshness_anomalies:bids"] == "warn"
    assert faulty["volume_anomalies:bids"] == "warn"


def test_a_shifted_status_mix_is_flagged(faulty: dict[str, str]) -> None:
    assert faulty["dimension_anomalies:orders"] == "warn"


def test_a_spike_in_null_emails_is_flagged(faulty: dict[str, str]) -> None:
    assert faulty["column_anomalies:customers.email"] == "warn"


def test_an_outlying_amount_is_flagged(faulty: dict[str, str]) -> None:
    assert faulty["column_anomalies:orders.total_amount"] == "warn"


def test_the_tables_without_a_fault_stay_quiet(faulty: dict[str, str]) -> None:
    for table in ("products", "order_items", "payments"):
        quiet = {k: s for k, s in faulty.items() if k.split(":")[1].split(".")[0] == table}
        assert quiet and set(quiet.values()) == {"pass"}, quiet
