"""The source simulator: deterministic history, realistic dirt, changes that feed the CDC log."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from loader.source import simulator
from loader.source.simulator import SimConfig, SimulatorError
from tests.conftest import SIM_END, create_database, query

SCALE = 0.01
RATE = 0.1


@pytest.fixture(scope="module")
def dirty_source(settings):
    """A small source with a high dirty rate, advanced by three days."""
    create_database(settings, "sim_dirty")
    endpoint = settings.source.with_database("sim_dirty")
    simulator.init(endpoint, SimConfig(scale=SCALE, seed=7, dirty_rate=RATE, end_date=SIM_END))
    before = query(endpoint, "select coalesce(max(change_id), 0) from cdc.change_log")[0][0]
    started = query(endpoint, "select clock_timestamp()")[0][0]
    days = simulator.advance(endpoint, 3)
    return endpoint, before, days, started


# the newest business timestamp of every table; {clock} is a timestamptz literal to
# compare with
LATEST_BUSINESS_TIMESTAMP = """
select 'customers.registered_at', max(registered_at) from marketplace.customers
union all select 'products.created_at', max(created_at) from marketplace.products
union all select 'orders.ordered_at', max(ordered_at) from marketplace.orders
union all select 'payments.paid_at', max(paid_at) from marketplace.payments
union all select 'bids.placed_at', max(placed_at) from marketplace.bids
"""


def latest_business_timestamps(endpoint) -> dict:
    return dict(query(endpoint, LATEST_BUSINESS_TIMESTAMP))


BUSINESS_HASH = """
select md5(string_agg(t::text, '|' order by k)) from (
  select customer_id as k, (customer_id, email, first_name, last_name, birth_date, phone,
         street, city, state, zip, registered_at) as t from marketplace.customers) x
union all
select md5(string_agg(t::text, '|' order by k)) from (
  select order_id as k, (order_id, customer_id, status, ordered_at, shipping_state,
         total_amount) as t from marketplace.orders) x
union all
select md5(string_agg(t::text, '|' order by k)) from (
  select bid_id as k, (bid_id, product_id, bidder_id, amount, placed_at, status) as t
  from marketplace.bids) x
"""


def test_same_seed_gives_the_same_data(settings):
    hashes = []
    for name, seed in (("sim_a", 3), ("sim_b", 3), ("sim_c", 4)):
        create_database(settings, name)
        endpoint = settings.source.with_database(name)
        simulator.init(endpoint, SimConfig(scale=0.002, seed=seed, end_date=SIM_END))
        simulator.advance(endpoint, 1)
        hashes.append(query(endpoint, BUSINESS_HASH))
    assert hashes[0] == hashes[1]
    assert hashes[0] != hashes[2]


def test_scale_sets_the_row_counts(dirty_source):
    endpoint, *_ = dirty_source
    rows = simulator.counts(endpoint)
    assert rows["customers"] >= 1000 and rows["orders"] >= 10_000 and rows["bids"] >= 20_000
    assert 2.2 < rows["order_items"] / rows["orders"] < 2.8
    assert 0.9 < rows["payments"] / rows["orders"] <= 1.0


def test_foreign_keys_are_declared_and_hold(dirty_source):
    endpoint, *_ = dirty_source
    fks = query(endpoint, """
        select conrelid::regclass::text, confrelid::regclass::text
        from pg_constraint where contype = 'f' and connamespace = 'marketplace'::regnamespace
    """)
    assert len(fks) == 6
    orphans = query(endpoint, """
        select count(*) from marketplace.orders o
        left join marketplace.customers c using (customer_id) where c.customer_id is null
    """)[0][0]
    assert orphans == 0


def share(endpoint, sql: str) -> float:
    return float(query(endpoint, sql)[0][0])


def test_dirty_customers_come_at_the_configured_rate_in_every_kind(dirty_source):
    endpoint, *_ = dirty_source
    kinds = {
        "email without @": "email not like '%@%'",
        "email with spaces": "email like '% %' and email like '%@%'",
        "lower-case state": "state ~ '^[a-z]{2}$'",
        "full state name": "length(state) > 2 and state !~ '^ '",
        "padded state": "state like ' %'",
        "whitespace in names": "first_name <> trim(first_name)",
    }
    total = 0.0
    for label, predicate in kinds.items():
        n = share(endpoint, f"select count(*) from marketplace.customers where {predicate}")
        assert n > 0, f"no {label}"
        total += n
    dupes = share(endpoint, """select count(*) - count(distinct email) from marketplace.customers
                               where email not like 'deleted-%'""")
    assert dupes > 0, "no duplicate customers sharing an email"
    customers = share(endpoint, "select count(*) from marketplace.customers")
    assert RATE * 0.6 < (total + dupes) / customers < RATE * 1.4


@pytest.mark.parametrize(
    "label, sql",
    [
        ("non-positive prices", "select avg((price <= 0)::int) from marketplace.products"),
        ("bids at or above the price", """select avg((b.amount >= p.price)::int)
            from marketplace.bids b join marketplace.products p using (product_id)
            where p.price > 0"""),
        ("payments that do not sum to the order", """select avg((p.amount <> o.total_amount)::int)
            from marketplace.payments p join marketplace.orders o using (order_id)"""),
    ],
)
def test_dirty_rows_per_table_at_the_configured_rate(dirty_source, label, sql):
    endpoint, *_ = dirty_source
    rate = share(endpoint, sql)
    assert RATE * 0.6 < rate < RATE * 1.4, f"{label}: {rate:.3f}"


def test_outliers_and_orphaned_items_exist(dirty_source):
    endpoint, *_ = dirty_source
    assert share(endpoint, "select count(*) from marketplace.order_items where quantity >= 50") > 0
    orphans = share(endpoint, """select count(*) from marketplace.order_items i
        where not exists (select from marketplace.products p where p.product_id = i.product_id)""")
    items = share(endpoint, "select count(*) from marketplace.order_items")
    assert 0 < orphans / items < RATE


def test_advance_adds_late_rows_and_skewed_clocks(dirty_source, settings):
    endpoint, _, days, _ = dirty_source
    assert all(d["late_orders"] > 0 for d in days)
    sim_day = query(endpoint, "select sim_day from sim.state")[0][0]
    late = share(endpoint, f"""select count(*) from marketplace.orders
        where created_at > now() - interval '1 hour' and ordered_at < date '{sim_day}' - 1""")
    assert late > 0, "late-arriving orders carry business dates days old"
    skewed = query(endpoint, """select count(*) filter (where updated_at < now() - interval '1 hour'
                                and updated_at > now() - interval '4 hours'),
                                count(*) filter (where updated_at < now() - interval '1 minute'
                                and updated_at > now() - interval '10 minutes')
                                from marketplace.orders where created_at < now() - interval '1 day'
                                or updated_at <> created_at""")[0]
    assert skewed[0] > 0 and skewed[1] > 0, "updates with a clock hours and minutes behind"


def test_advance_feeds_the_change_log_including_deletes(dirty_source):
    endpoint, before, days, started = dirty_source
    ops = dict(query(endpoint, """select operation, count(*) from cdc.change_log
                                  where change_id > %s group by operation""", (before,)))
    assert ops.get("I", 0) > 0 and ops.get("U", 0) > 0 and ops.get("D", 0) > 0
    retracted = sum(d["retracted_bids"] for d in days)
    logged = share(endpoint, """select count(*) from cdc.change_log
                                where operation = 'D' and table_name = 'bids'""")
    assert logged >= retracted > 0
    moved = query(endpoint, """select count(*) from marketplace.orders
                               where created_at < %(t)s and updated_at > %(t)s""",
                  {"t": started})[0][0]
    assert moved > 0, "status changes move updated_at"
    images = query(endpoint, """select row_data ? 'order_id',
                                row_key = (row_data->>'order_id')::bigint
                                from cdc.change_log where table_name = 'orders' limit 1""")
    assert images == [(True, True)]


def test_init_refuses_to_overwrite_without_force(dirty_source):
    endpoint, *_ = dirty_source
    with pytest.raises(SimulatorError, match="already initialised.*--force"):
        simulator.init(endpoint, SimConfig(scale=SCALE))


def test_bad_simulator_input_is_rejected(settings):
    with pytest.raises(SimulatorError, match="scale -1"):
        SimConfig(scale=-1).validate()
    with pytest.raises(SimulatorError, match="dirty rate 0.9"):
        SimConfig(dirty_rate=0.9).validate()
    create_database(settings, "sim_empty")
    with pytest.raises(SimulatorError, match="run `elt source init` first"):
        simulator.advance(settings.source.with_database("sim_empty"), 1)
    endpoint = settings.source.with_database("sim_empty")
    today = query(endpoint, "select (now() at time zone 'UTC')::date")[0][0]
    with pytest.raises(SimulatorError, match=f"end date {today + timedelta(days=1)} is in the "
                       f"future.*use {today} or earlier"):
        simulator.init(endpoint, SimConfig(scale=0.001, end_date=today + timedelta(days=1)))
    assert not simulator.is_initialised(endpoint)


def test_advance_refuses_to_date_rows_in_the_future(dirty_source):
    endpoint, *_ = dirty_source
    with pytest.raises(SimulatorError, match=r"cannot advance 366 day\(s\).*none were simulated"):
        simulator.advance(endpoint, 366)


@pytest.fixture(scope="module")
def history_only(settings):
    """A small source straight after init with SIM_END, before any advance."""
    create_database(settings, "sim_history")
    endpoint = settings.source.with_database("sim_history")
    simulator.init(endpoint, SimConfig(scale=SCALE, seed=7, dirty_rate=RATE, end_date=SIM_END))
    return endpoint


def test_history_ends_where_its_state_says(history_only):
    """The history fills the days before SIM_END, its last day is SIM_END - 1, sim.state says
    so, and no business timestamp (a payment neither) is at or after 00:00 of SIM_END."""
    endpoint = history_only
    assert simulator.state(endpoint)["sim_day"] == str(SIM_END - timedelta(days=1))
    newest = dict(query(endpoint, """
        select 'orders', max(ordered_at)::date from marketplace.orders
        union all select 'bids', max(placed_at)::date from marketplace.bids"""))
    assert newest == {"orders": SIM_END - timedelta(days=1), "bids": SIM_END - timedelta(days=1)}
    clock = query(endpoint, "select %s::timestamp at time zone 'UTC'", (SIM_END,))[0][0]
    late = {k: v for k, v in latest_business_timestamps(endpoint).items() if v >= clock}
    assert not late, f"history rows dated at or after its end {clock}: {late}"


def test_advance_starts_the_day_after_the_history_and_skips_none(dirty_source):
    """The history's newest business date + 1 day is the first advanced day; three advanced
    days are the three days after it, one each, and sim.state ends on the last."""
    endpoint, _, days, started = dirty_source
    first = SIM_END  # the history's last day is SIM_END - 1 (test above)
    expected = [first + timedelta(days=i) for i in range(3)]
    assert [d["sim_day"] for d in days] == [str(d) for d in expected]
    assert simulator.state(endpoint)["sim_day"] == str(expected[-1])
    history_newest = query(endpoint, """
        select (select max(ordered_at)::date from marketplace.orders where created_at < %(t)s),
               (select max(placed_at)::date from marketplace.bids where created_at < %(t)s)""",
        {"t": started})[0]
    assert history_newest == (first - timedelta(days=1), first - timedelta(days=1))
    # the rows written by advance: bids and on-time orders are dated on the advanced days,
    # every one of them, nothing after; late orders come up to 5 days before their day
    dated = dict(query(endpoint, """
        select 'bids', array_agg(distinct placed_at::date order by placed_at::date)
        from marketplace.bids where created_at >= %(t)s
        union all
        select 'orders', array_agg(distinct ordered_at::date order by ordered_at::date)
        from marketplace.orders where created_at >= %(t)s and ordered_at >= %(first)s
        union all
        select 'customers', array_agg(distinct registered_at::date order by registered_at::date)
        from marketplace.customers where created_at >= %(t)s""",
        {"t": started, "first": first}))
    assert dated["bids"] == expected
    assert dated["orders"] == expected
    assert set(dated["customers"]) <= set(expected)
    oldest_late = query(endpoint, """select min(ordered_at)::date from marketplace.orders
                                     where created_at >= %s""", (started,))[0][0]
    assert first - timedelta(days=5) <= oldest_late < first
    clock = query(endpoint, "select (%s::date + 1)::timestamp at time zone 'UTC'",
                  (expected[-1],))[0][0]
    ahead = {k: v for k, v in latest_business_timestamps(endpoint).items() if v >= clock}
    assert not ahead, f"rows dated after the simulated clock {clock}: {ahead}"


@pytest.fixture(scope="module")
def default_source(settings):
    """A small source built with the default end date (DEFAULT_HEADROOM_DAYS before today)."""
    create_database(settings, "sim_default")
    endpoint = settings.source.with_database("sim_default")
    simulator.init(endpoint, SimConfig(scale=0.002, seed=5))
    return endpoint


def snapshot(endpoint) -> tuple:
    return (simulator.state(endpoint), simulator.counts(endpoint),
            query(endpoint, "select coalesce(max(change_id), 0) from cdc.change_log")[0][0])


def test_advance_never_passes_the_real_clock(default_source):
    """A fresh default source advances 3 x 10 days up to yesterday with no business timestamp
    after now(); asking for more days than are left is refused whole and says how many are
    left; the day function itself refuses a day that is not over."""
    endpoint = default_source
    today = query(endpoint, "select (now() at time zone 'UTC')::date")[0][0]
    headroom = simulator.DEFAULT_HEADROOM_DAYS
    assert simulator.state(endpoint)["sim_day"] == str(today - timedelta(days=headroom + 1))

    before = snapshot(endpoint)
    with pytest.raises(SimulatorError, match=rf"cannot advance {headroom + 1} day\(s\).* "
                       rf"{headroom} day\(s\) are left and none were simulated; "
                       rf"advance at most {headroom} day\(s\)"):
        simulator.advance(endpoint, headroom + 1)
    assert snapshot(endpoint) == before, "a refused advance simulated something"

    simulated = []
    for _ in range(3):
        simulated += [d["sim_day"] for d in simulator.advance(endpoint, 10)]
    assert simulated == [str(today - timedelta(days=headroom - i)) for i in range(30)]
    assert simulator.state(endpoint)["sim_day"] == str(today - timedelta(days=1))
    now, midnight = query(endpoint, """select now(),
                                       (now() at time zone 'UTC')::date::timestamp
                                       at time zone 'UTC'""")[0]
    ahead = {k: v for k, v in latest_business_timestamps(endpoint).items() if v >= midnight}
    assert not ahead, f"rows dated today or later (now() is {now}): {ahead}"
    assert max(latest_business_timestamps(endpoint).values()) <= now

    before = snapshot(endpoint)
    with pytest.raises(SimulatorError, match=r"0 day\(s\) are left and none were simulated; "
                       r"no day is left to simulate until tomorrow"):
        simulator.advance(endpoint, 1)
    assert snapshot(endpoint) == before


def test_the_day_function_refuses_a_day_that_is_not_over(default_source, monkeypatch):
    """Should advance read a clock a day ahead, sim.advance_day refuses today on its own, and
    the error is one line."""
    endpoint = default_source
    today = query(endpoint, "select (now() at time zone 'UTC')::date")[0][0]
    monkeypatch.setattr(simulator, "_utc_today", lambda _: today + timedelta(days=2))
    with pytest.raises(SimulatorError) as refused:
        for _ in range(simulator.DEFAULT_HEADROOM_DAYS + 1):
            simulator.advance(endpoint, 1)
    message = str(refused.value)
    assert "\n" not in message
    assert re.search(rf"advance failed after 0 of 1 day\(s\) .*: cannot simulate {today} before "
                     r"it is over: it ends at .*; the last day that can be simulated is "
                     r"yesterday", message), message
    assert simulator.state(endpoint)["sim_day"] == str(today - timedelta(days=1))
