"""The anomaly monitors end to end on PostgreSQL: daily metrics measured set-based, stored in
quality.metrics and judged. A simulated history with injected faults is flagged where the
faults are; the same history without them raises nothing."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import pytest

from loader.config import Settings
from loader.quality import store
from loader.quality.anomaly_checks import monitor_checks
from loader.quality.monitors import AnomalySettings, FreshnessSettings, Monitor, QualityConfig
from tests.conftest import create_database, query

LAST = date(2026, 6, 30)  # last complete day: data runs one day further
DAYS = 62
CONFIG = QualityConfig(
    anomaly=AnomalySettings(sensitivity=3.0, training_days=56, detection_days=3),
    freshness=FreshnessSettings(),
    completeness={},
    completeness_severity="fail",
    profiles=(),
    monitors=(
        Monitor(
            "shop.orders",
            "ordered_at",
            volume_seasonality="day_of_week",
            columns={"total_amount": ("null_pct", "average")},
            categories=("status",),
            amounts=("total_amount",),
        ),
        Monitor("shop.customers", "registered_at", columns={"email": ("null_pct",)}),
        Monitor("shop.bids", "placed_at", freshness=True),
    ),
)

HISTORY = """
create schema shop;
select setseed(0.42);
-- ~300 orders a day, busier at weekends; a stable status mix; log-normal amounts
create table shop.orders as
select row_number() over () as order_id, ts as ordered_at,
       case when r < 0.7 then 'delivered' when r < 0.85 then 'shipped'
            when r < 0.95 then 'cancelled' else 'returned' end as status,
       round(exp(4 + 0.5 * sqrt(-2 * ln(random())) * cos(2 * pi() * random()))::numeric, 2)
           as total_amount
from (
    select d + random() * interval '1 day' as ts, random() as r
    from generate_series(%(start)s::timestamptz, %(end)s::timestamptz, interval '1 day') as d,
         generate_series(1, case when extract(isodow from d) >= 6 then 450 else 300 end)
) as s;
create table shop.customers as
select row_number() over () as customer_id, ts as registered_at,
       case when random() < 0.02 then null else 'c' || (random() * 1e6)::int || '@x.com' end
           as email
from (
    select d + random() * interval '1 day' as ts
    from generate_series(%(start)s::timestamptz, %(end)s::timestamptz, interval '1 day') as d,
         generate_series(1, 120)
) as s;
-- a bid every 20 minutes or so
create table shop.bids as
select row_number() over () as bid_id, ts as placed_at
from generate_series(%(start)s::timestamptz,
                     %(end)s::timestamptz + interval '1 day' - interval '20 minutes',
                     interval '20 minutes') as ts;
"""

FAULTS = """
-- a day with half the orders
delete from shop.orders
where ordered_at::date = %(half_day)s and order_id %% 2 = 0;
-- a spike in null emails
update shop.customers set email = null
where registered_at::date = %(last)s and customer_id %% 4 = 0;
-- a shifted status mix on the last two days
update shop.orders set status = 'cancelled'
where ordered_at::date >= %(last)s::date - 1 and status = 'delivered' and order_id %% 3 = 0;
-- an amount far outside anything seen
update shop.orders set total_amount = 9999999
where order_id = (select max(order_id) from shop.orders where ordered_at::date = %(last)s);
-- the bids table stalls two days before the end
delete from shop.bids where placed_at >= %(last)s::date - 1;
"""


def build(settings: Settings, name: str, faults: bool) -> Settings:
    create_database(settings, name)
    local = dataclasses.replace(settings, warehouse=settings.warehouse.with_database(name))
    conn = store.connect(local.warehouse)
    try:
        with conn.cursor() as cur:
            cur.execute("set time zone 'UTC'")
            params = {
                "start": LAST - timedelta(days=DAYS),
                "end": LAST + timedelta(days=1),
                "last": LAST,
                "half_day": LAST - timedelta(days=1),
            }
            cur.execute(HISTORY, params)
            if faults:
                cur.execute(FAULTS, params)
        conn.commit()
        store.ensure_schema(conn)
    finally:
        conn.close()
    return local


def judge(settings: Settings) -> dict[str, object]:
    conn = store.connect(settings.warehouse)
    try:
        with conn.cursor() as cur:
            cur.execute("set time zone 'UTC'")
        conn.commit()
        return {c.check_id: c for c in monitor_checks(conn, "test-run", CONFIG)}
    finally:
        conn.close()


@pytest.fixture(scope="module")
def clean(settings: Settings) -> dict:
    return judge(build(settings, "quality_clean_history", faults=False))


@pytest.fixture(scope="module")
def faulty(settings: Settings) -> tuple[Settings, dict]:
    local = build(settings, "quality_faulty_history", faults=True)
    return local, judge(local)


def anomalous_days(check) -> set[date]:
    return {
        date.fromisoformat(str(p["day"])) if not isinstance(p["day"], date) else p["day"]
        for p in check.details["points"]
        if p["is_anomaly"]
    }


def test_the_clean_history_raises_nothing(clean: dict) -> None:
    assert len(clean) == 9
    assert {c.check_id: c.status for c in clean.values() if c.status != "pass"} == {}


def test_the_data_clock_judges_the_last_complete_day(clean: dict) -> None:
    volume = clean["anomaly:shop.orders:volume"]
    judged = [p for p in volume.details["points"] if p["in_detection"]]
    assert [p["day"] for p in judged] == [LAST - timedelta(days=i) for i in (2, 1, 0)]


def test_a_day_with_half_the_orders_is_flagged(faulty) -> None:
    check = faulty[1]["anomaly:shop.orders:volume"]
    assert check.status == "warn"
    assert anomalous_days(check) == {LAST - timedelta(days=1)}


def test_a_spike_in_null_emails_is_flagged(faulty) -> None:
    check = faulty[1]["anomaly:shop.customers.email:null_pct"]
    assert check.status == "warn" and anomalous_days(check) == {LAST}


def test_a_shifted_status_mix_is_flagged(faulty) -> None:
    check = faulty[1]["anomaly:shop.orders.status:distribution_shift"]
    assert check.status == "warn"
    assert anomalous_days(check) == {LAST - timedelta(days=1), LAST}
    assert (
        check.details["detection_mix"]["cancelled"] > 2 * check.details["training_mix"]["cancelled"]
    )


def test_a_stalled_table_is_flagged(faulty) -> None:
    check = faulty[1]["anomaly:shop.bids:freshness_hours"]
    assert check.status == "warn" and anomalous_days(check) == {LAST - timedelta(days=1), LAST}
    volume = faulty[1]["anomaly:shop.bids:volume"]
    assert volume.status == "warn"


def test_an_outlying_amount_is_flagged_with_its_row(faulty) -> None:
    check = faulty[1]["anomaly:shop.orders.total_amount:outliers"]
    assert check.status == "warn" and check.failing_rows == 1
    assert float(check.sample[0]["total_amount"]) == 9999999


def test_the_metric_history_is_stored_one_value_per_day(faulty) -> None:
    settings, _ = faulty
    rows = query(
        settings.warehouse,
        "select count(*), count(distinct bucket_date), min(bucket_date), max(bucket_date) "
        "from quality.metrics where table_name = 'shop.orders' and metric = 'volume'",
    )[0]
    assert rows == (59, 59, LAST - timedelta(days=58), LAST)


def test_the_data_clock_from_the_shared_table_scan_is_the_same_day(faulty) -> None:
    from loader.quality import metrics
    from loader.quality.checks import TableScans

    settings, _ = faulty
    conn = store.connect(settings.warehouse)
    try:
        with conn.cursor() as cur:
            cur.execute("set time zone 'UTC'")
        scans = TableScans(conn)
        for m in CONFIG.monitors:
            scans.want(m.table, newest=(m.timestamp,))
        shared = metrics.data_clock(conn, CONFIG.monitors, scans.newest_value)
        assert shared == metrics.data_clock(conn, CONFIG.monitors) == LAST
    finally:
        conn.close()
