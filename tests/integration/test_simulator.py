"""The source simulator: deterministic history, realistic dirt, changes that feed the CDC log."""

from __future__ import annotations

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


def test_advance_refuses_to_date_rows_in_the_future(dirty_source):
    endpoint, *_ = dirty_source
    with pytest.raises(SimulatorError, match="would date orders in the future"):
        simulator.advance(endpoint, 366)
