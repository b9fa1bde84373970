"""Build the operational database and simulate days of activity, set-based in SQL."""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from importlib import resources

import psycopg2

from loader.config import PROJECT_ROOT, Endpoint, UserError
from loader.db import connect_raw

log = logging.getLogger(__name__)

TABLES = ("customers", "products", "orders", "order_items", "payments", "bids")
# rows at scale 1; the simulator keeps these proportions at every scale
BASE_ROWS = {"customers": 100_000, "products": 50_000, "orders": 1_000_000, "bids": 2_000_000}
MAX_SCALE = 20.0
MIN_SCALE = 0.0001
HISTORY_DAYS = 730
# the history ends this many days before today, so `advance` has room before "now"
DEFAULT_HEADROOM_DAYS = 30


class SimulatorError(UserError, ValueError):
    """Bad simulator input or state; the message says what to do."""


@dataclass(frozen=True)
class SimConfig:
    scale: float = 0.1
    seed: int = 42
    dirty_rate: float = 0.02
    end_date: date | None = None

    def validate(self) -> None:
        if not MIN_SCALE <= self.scale <= MAX_SCALE:
            raise SimulatorError(
                f"scale {self.scale} is out of range: use a number from {MIN_SCALE} to "
                f"{MAX_SCALE:g} (1 is about 6.6M rows, 0.1 about 660k)"
            )
        if not 0 <= self.dirty_rate <= 0.5:
            raise SimulatorError(
                f"dirty rate {self.dirty_rate} is out of range: use a share from 0 to 0.5"
            )
        if not 0 <= self.seed < 2**31:
            raise SimulatorError(f"seed {self.seed} is out of range: use 0 to {2**31 - 1}")


def _sql(name: str) -> str:
    return resources.files("loader.source").joinpath("sql", name).read_text()


def _us_states() -> list[tuple[str, str]]:
    with (PROJECT_ROOT / "seeds" / "us_states.csv").open() as handle:
        return [(row["state_code"], row["state_name"]) for row in csv.DictReader(handle)]


def is_initialised(endpoint: Endpoint) -> bool:
    conn = connect_raw(endpoint)
    try:
        with conn.cursor() as cur:
            cur.execute("select to_regclass('sim.state') is not null")
            return bool(cur.fetchone()[0])
    finally:
        conn.close()


def init(
    endpoint: Endpoint,
    config: SimConfig,
    *,
    force: bool = False,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, int]:
    """Create the operational schema and generate its history; returns rows per table."""
    config.validate()
    if is_initialised(endpoint) and not force:
        raise SimulatorError(
            f"the source {endpoint.display} is already initialised; "
            "run `elt source advance` to add days, or `elt source init --force` to rebuild it"
        )
    end = config.end_date or date.today() - timedelta(days=DEFAULT_HEADROOM_DAYS)
    start = end - timedelta(days=HISTORY_DAYS)
    conn = connect_raw(endpoint)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("set local max_parallel_workers_per_gather = 0")
            cur.execute("set local sim.history = 'on'")  # see sim.written_at
            cur.execute("drop schema if exists marketplace, cdc, sim cascade")
            cur.execute(_sql("schema.sql"))
            cur.execute("create table sim.us_states (code text primary key, name text not null)")
            cur.executemany("insert into sim.us_states values (%s, %s)", _us_states())
            cur.execute(_sql("generate.sql"))
            cur.execute(_sql("advance.sql"))
            cur.execute(
                "insert into sim.state (seed, scale, dirty_rate, sim_day) values (%s, %s, %s, %s)",
                (config.seed, config.scale, config.dirty_rate, end),
            )
            n = {k: max(1, round(v * config.scale)) for k, v in BASE_ROWS.items()}
            window = (f"{start} 00:00+00", f"{end} 00:00+00")
            steps = [
                ("customers", "select sim.gen_customers(1, %s, %s, %s)", n["customers"]),
                ("products", "select sim.gen_products(1, %s, %s, %s)", n["products"]),
                (
                    "orders, order items, payments",
                    "select sim.gen_orders(1, %s, %s, %s, %s)",
                    n["orders"],
                ),
                ("bids", "select sim.gen_bids(1, %s, %s, %s, %s)", n["bids"]),
            ]
            for label, statement, rows in steps:
                t0 = time.monotonic()
                if label in ("products", "orders, order items, payments", "bids"):
                    cur.execute("select sim.refresh_pools()")
                params = (rows, *window) + ((window[1],) if statement.count("%s") == 4 else ())
                cur.execute(statement, params)
                progress(f"generated {label} ({rows:,} rows) in {time.monotonic() - t0:.1f}s")
            t0 = time.monotonic()
            cur.execute(_sql("constraints.sql"))
            progress(f"added keys, indexes and triggers in {time.monotonic() - t0:.1f}s")
        # a database with years of history has been vacuumed long since: statistics, hint
        # bits and the visibility map are set, as autovacuum would have left them
        t0 = time.monotonic()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("vacuum (analyze) marketplace.customers, marketplace.products, "
                        "marketplace.orders, marketplace.order_items, marketplace.payments, "
                        "marketplace.bids")
        progress(f"vacuumed and analysed in {time.monotonic() - t0:.1f}s")
    finally:
        conn.close()
    return counts(endpoint)


def advance(
    endpoint: Endpoint, days: int, *, progress: Callable[[str], None] = lambda _: None
) -> list[dict]:
    """Simulate `days` days of activity, one transaction per day; returns each day's counts."""
    if not 1 <= days <= 366:
        raise SimulatorError(f"days {days} is out of range: advance by 1 to 366 days at a time")
    if not is_initialised(endpoint):
        raise SimulatorError(
            f"the source {endpoint.display} has no marketplace yet: run `elt source init` first"
        )
    sim_day = date.fromisoformat(str(state(endpoint)["sim_day"]))
    if sim_day + timedelta(days=days) > date.today():
        room = max(0, (date.today() - sim_day).days)
        raise SimulatorError(
            f"advancing {days} day(s) from {sim_day} would date orders in the future "
            f"(today is {date.today()}); advance at most {room} day(s), or rebuild with "
            "`elt source init --force --end-date` further in the past"
        )
    conn = connect_raw(endpoint)
    out = []
    try:
        for _ in range(days):
            t0 = time.monotonic()
            with conn, conn.cursor() as cur:
                cur.execute("set local max_parallel_workers_per_gather = 0")
                cur.execute("select sim.refresh_pools()")
                cur.execute("select sim.advance_day()")
                day = cur.fetchone()[0]
            out.append(day)
            progress(
                f"simulated {day['sim_day']}: {day['new_orders']} orders "
                f"({day['late_orders']} late), {day['status_changes']} status changes, "
                f"{day['retracted_bids']} retracted bids in {time.monotonic() - t0:.1f}s"
            )
    except psycopg2.Error as exc:
        raise SimulatorError(f"advance failed: {str(exc).strip()}") from exc
    finally:
        conn.close()
    return out


def counts(endpoint: Endpoint) -> dict[str, int]:
    """Exact row counts of the marketplace tables."""
    conn = connect_raw(endpoint)
    try:
        with conn.cursor() as cur:
            cur.execute(
                " union all ".join(f"select '{t}', count(*) from marketplace.{t}" for t in TABLES)
            )
            found = dict(cur.fetchall())
            return {name: int(found[name]) for name in TABLES}
    finally:
        conn.close()


def state(endpoint: Endpoint) -> dict:
    conn = connect_raw(endpoint)
    try:
        with conn.cursor() as cur:
            cur.execute("select row_to_json(s) from sim.state as s")
            row = cur.fetchone()
            return json.loads(json.dumps(row[0])) if row else {}
    finally:
        conn.close()
