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
# the history ends this many days before today, so `advance` has room before "now": it
# ends at 00:00 UTC of the day 30 days ago, its last day is the day before, and `advance`
# can simulate the 30 whole days from that day to yesterday
DEFAULT_HEADROOM_DAYS = 30

# Days are UTC days. The simulated clock is 00:00 UTC after sim.state.sim_day, the last day
# simulated: every business timestamp (registered_at, ordered_at, paid_at, placed_at, a
# product's created_at) lies before it, and it never passes the real clock, the source's
# now(). A day can be simulated once it is over (see sim.advance_day).
UTC_TODAY = "select (now() at time zone 'UTC')::date"


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
    """Create the operational schema and generate its history; returns rows per table.

    The history covers the HISTORY_DAYS days before `config.end_date` (default: the day
    DEFAULT_HEADROOM_DAYS days ago): it ends at 00:00 UTC of that day, which is the first day
    `advance` simulates; sim.state.sim_day records the history's last day, the day before.
    An end date after today (UTC, by the source's clock) is refused: the history would be
    dated in the future."""
    config.validate()
    if is_initialised(endpoint) and not force:
        raise SimulatorError(
            f"the source {endpoint.display} is already initialised; "
            "run `elt source advance` to add days, or `elt source init --force` to rebuild it"
        )
    today = _utc_today(endpoint)
    end = config.end_date or today - timedelta(days=DEFAULT_HEADROOM_DAYS)
    if end > today:
        raise SimulatorError(
            f"end date {end} is in the future (today is {today} UTC): the history ends at "
            f"00:00 UTC of the end date, so use {today} or earlier"
        )
    start = end - timedelta(days=HISTORY_DAYS)
    conn = connect_raw(endpoint)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("set local max_parallel_workers_per_gather = 0")
            # the commit waits for its WAL: a vacuum may set a row's hint bits (and its page
            # all-visible) only once its commit is flushed, which synchronous_commit = off
            # (the embedded server's setting) would leave to the WAL writer, later
            cur.execute("set local synchronous_commit = on")
            cur.execute("set local sim.history = 'on'")  # see sim.written_at
            cur.execute("drop schema if exists marketplace, cdc, sim cascade")
            cur.execute(_sql("schema.sql"))
            cur.execute("create table sim.us_states (code text primary key, name text not null)")
            cur.executemany("insert into sim.us_states values (%s, %s)", _us_states())
            cur.execute(_sql("generate.sql"))
            cur.execute(_sql("advance.sql"))
            cur.execute(
                "insert into sim.state (seed, scale, dirty_rate, sim_day) values (%s, %s, %s, %s)",
                # the last day of the history: `advance` goes on from the day after it
                (config.seed, config.scale, config.dirty_rate, end - timedelta(days=1)),
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
    """Simulate `days` days of activity, one transaction per day; returns each day's counts.

    The first day simulated is the day after sim.state.sim_day (after `init`, the day after
    the history's last day), and each call goes on from where the previous one stopped, so
    no day is skipped or simulated twice. Only days that are over can be simulated, the
    last one is yesterday (UTC, by the source's clock), so no business timestamp is ever
    after now(). A request for more days than are left is refused whole, before any day is
    simulated, with a SimulatorError that says how many days are left: `advance N`
    simulates N days or none, never fewer while reporting success, so a scheduler
    (`elt run --simulate-days N`) can rely on it. sim.advance_day refuses a day that is not
    over as well, should the clock read here be wrong."""
    if not 1 <= days <= 366:
        raise SimulatorError(f"days {days} is out of range: advance by 1 to 366 days at a time")
    if not is_initialised(endpoint):
        raise SimulatorError(
            f"the source {endpoint.display} has no marketplace yet: run `elt source init` first"
        )
    sim_day = date.fromisoformat(str(state(endpoint)["sim_day"]))
    today = _utc_today(endpoint)
    left = max(0, (today - sim_day).days - 1)
    if days > left:
        more = (
            f"advance at most {left} day(s) now (up to {today - timedelta(days=1)})"
            if left
            else "no day is left to simulate until tomorrow"
        )
        raise SimulatorError(
            f"cannot advance {days} day(s): the source is simulated up to {sim_day} and only "
            f"whole days up to yesterday can be simulated (today is {today} UTC), so {left} "
            f"day(s) are left and none were simulated; {more}, or rebuild it with "
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
        diag = exc.diag
        reason = (
            diag.message_primary + (f"; {diag.message_hint}" if diag.message_hint else "")
            if diag.message_primary
            else " ".join(str(exc).split())
        )
        raise SimulatorError(
            f"advance failed after {len(out)} of {days} day(s) were simulated and committed: "
            f"{reason}"
        ) from exc
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


def _utc_today(endpoint: Endpoint) -> date:
    """Today's UTC date by the source's clock, the clock the simulated one must not pass."""
    conn = connect_raw(endpoint)
    try:
        with conn.cursor() as cur:
            cur.execute(UTC_TODAY)
            return cur.fetchone()[0]
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
