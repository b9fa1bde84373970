"""The search for rows written behind an increment's window, over the pages written since the
previous load only, where PostgreSQL can say which pages those are.

Every write to a heap page (insert, update, delete) clears the page's bit in the table's
visibility map, and only VACUUM sets it again (PostgreSQL 14-18; COPY FREEZE and table rewrites
give the table a new file). A row written since the previous load's snapshot therefore lies on
a page that is not all-visible, unless a vacuum ran since. A vacuum that could set such a page's
bit must compute its horizon after that snapshot ended (while it is held, the row's transaction
is not older than every snapshot), so it starts after the previous load read the table's token
(vacuum_token: its file, its vacuum counters, when counters were last reset) inside that
snapshot, and it either still runs now or has counted itself in the table's vacuum counters.
So: when the token read now equals the previous load's and no vacuum
runs on the table, before and after the pages are read, the pages not all-visible hold every
row the search looks for, and the search reads those pages alone; otherwise it reads the whole
table (queries.count_statement), as it does where the visibility map cannot be read.

The map is read with the `pg_visibility` extension (contrib): `create extension pg_visibility`
in the source database and `grant execute on function pg_visibility_map(regclass),
pg_visibility_map_summary(regclass) to` the loader's role. Without them, on a standby (whose
vacuums replay without counting) or with `track_counts` off, every search reads the whole
table.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg2 import sql

from loader.db import qualified
from loader.extract.catalog import good_key
from loader.extract.plan import Action
from loader.extract.queries import (
    SourceCount,
    count_statement,
    missed_filter,
    search_params,
    searches,
)
from loader.extract.tables import LoaderConfig, TableSpec

# pages between two runs of changed pages read anyway rather than split the scan
MERGE_GAP = 16
# at most this many page ranges in one search (the closest ranges merge first)
MAX_RANGES = 64
# above this share of the table's pages, one sequential scan is cheaper than page ranges
MAX_PAGE_SHARE = 0.5

# The table's file, how often it was vacuumed, and when the counters were last reset (a crash
# or pg_stat_reset); null where the search cannot rely on the visibility map. The first read of
# statistics in a transaction is kept for the rest of it: pg_stat_clear_snapshot() reads anew.
TOKEN_SQL = """
select case when pg_is_in_recovery() or not current_setting('track_counts')::bool
            or current_setting('server_version_num')::int not between 140000 and 189999
            or not coalesce(has_function_privilege(
                   to_regprocedure('pg_visibility_map(regclass)'), 'execute'), false)
            or not coalesce(has_function_privilege(
                   to_regprocedure('pg_visibility_map_summary(regclass)'), 'execute'), false)
       then null
       else jsonb_build_object(
           'filenode', pg_relation_filenode(r.oid),
           'vacuums', pg_stat_get_vacuum_count(r.oid) + pg_stat_get_autovacuum_count(r.oid),
           'stats_reset', concat_ws(' ',
               pg_stat_get_db_stat_reset_time(d.oid), pg_stat_get_bgwriter_stat_reset_time()))
       end,
       exists (select from pg_stat_progress_vacuum v
               where v.datid = d.oid and (v.relid = r.oid or v.relid is null))
from (select %(table)s::regclass as oid) r,
     (select oid from pg_database where datname = current_database()) d
"""

# the table's pages, and how many are all-visible (in C: a fraction of a millisecond)
SUMMARY_SQL = """
select pg_relation_size(%(table)s::regclass) / current_setting('block_size')::int, all_visible
from pg_visibility_map_summary(%(table)s::regclass)
"""

# runs of consecutive pages that are not all-visible
RUNS_SQL = """
select min(blkno), max(blkno)
from (select blkno, blkno - row_number() over (order by blkno) as run
      from pg_visibility_map(%(table)s::regclass) where not all_visible) as pages
group by run order by 1
"""


def _read_token(cur, table: str) -> tuple[dict | None, bool]:
    cur.execute("select pg_stat_clear_snapshot()")
    cur.execute(TOKEN_SQL, {"table": table})
    token, vacuuming = cur.fetchone()
    return token, vacuuming


def vacuum_token(cur, table: str) -> dict:
    """The token a load keeps in its table's state, read in its snapshot; {} where the
    visibility map cannot be relied on."""
    token, _ = _read_token(cur, table)
    return token or {}


def page_ranges(runs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Runs of pages (first, last), merged across gaps of MERGE_GAP pages or fewer, then the
    closest ones until at most MAX_RANGES remain."""
    ranges: list[list[int]] = []
    for lo, hi in sorted(runs):
        if ranges and lo - ranges[-1][1] - 1 <= MERGE_GAP:
            ranges[-1][1] = max(ranges[-1][1], hi)
        else:
            ranges.append([lo, hi])
    if len(ranges) > MAX_RANGES:
        # read through the smallest gaps, as many as there are ranges too many
        gaps = sorted(range(len(ranges) - 1), key=lambda j: ranges[j + 1][0] - ranges[j][1])
        closed = set(gaps[: len(ranges) - MAX_RANGES])
        merged = [ranges[0]]
        for j in range(1, len(ranges)):
            if j - 1 in closed:
                merged[-1][1] = ranges[j][1]
            else:
                merged.append(ranges[j])
        ranges = merged
    return [(lo, hi) for lo, hi in ranges]


@dataclass
class ChangedPages:
    """The pages a search reads, or why it reads the whole table."""

    ranges: list[tuple[int, int]]
    pages: int  # pages in the ranges
    table_pages: int
    token: dict

    @property
    def describe(self) -> str:
        return f"{self.pages:,} of {self.table_pages:,} pages (written since the last load)"


def changed_pages(cur, table: str, previous: dict | None) -> ChangedPages | str:
    """The page ranges that hold every row written since the load that kept `previous` (its
    vacuum_token), or the reason the search must read the whole table."""
    token, vacuuming = _read_token(cur, table)
    if token is None:
        return "the visibility map cannot be read (pg_visibility, standby or track_counts)"
    if not previous:
        return "no visibility-map token from the previous load"
    if vacuuming:
        return "a vacuum is running on the table"
    if token != previous:
        return "the table was vacuumed or rewritten since the last load"
    cur.execute(SUMMARY_SQL, {"table": table})
    table_pages, all_visible = cur.fetchone()
    written = max(table_pages - all_visible, 0)
    if written > table_pages * MAX_PAGE_SHARE:
        return f"{written:,} of {table_pages:,} pages were written since the last vacuum"
    cur.execute(RUNS_SQL, {"table": table})
    ranges = page_ranges(cur.fetchall())
    pages = sum(hi - lo + 1 for lo, hi in ranges)
    if pages > table_pages * MAX_PAGE_SHARE:
        return (f"the {written:,} pages written since the last vacuum lie across "
                f"{pages:,} of {table_pages:,}")
    return ChangedPages(ranges, pages, table_pages, token)


def still_valid(cur, table: str, found: ChangedPages) -> bool:
    """Whether no vacuum ran on the table while its pages were read: the same token, none
    running."""
    token, vacuuming = _read_token(cur, table)
    return not vacuuming and token == found.token


def search_statement(
    config: LoaderConfig, spec: TableSpec, found: ChangedPages, missed: sql.Composable
) -> sql.Composed:
    """ctid and seconds behind the window of the rows `missed` selects on the changed pages:
    one TID range scan per range."""
    table = qualified(config.source_schema, spec.name)
    where = good_key(spec.primary_key, table) if not spec.key_enforced else sql.SQL("true")
    branch = sql.SQL(
        "select t.ctid::text, extract(epoch from %(since)s::timestamptz - t.{c}) from {t} as t "
        "where t.ctid >= {lo}::tid and t.ctid < {hi}::tid and {w} and {m}"
    )
    return sql.SQL(" union all ").join(
        branch.format(c=sql.Identifier(spec.cursor), t=table, w=where, m=missed,
                      lo=sql.Literal(f"({lo},0)"), hi=sql.Literal(f"({hi + 1},0)"))
        for lo, hi in found.ranges
    )


def count_source(
    cur, config: LoaderConfig, spec: TableSpec, action: Action, state: dict
) -> SourceCount:
    """Count the source table in the open snapshot of `cur` and, on a timestamp increment,
    find the rows written behind the window: on the changed pages where they are known, else
    in the count's own scan of the whole table."""
    full_scan = "the whole table"
    if searches(spec, action, state):
        table = qualified(config.source_schema, spec.name).as_string(cur)
        found = changed_pages(cur, table, state.get("vacuum_token"))
        if isinstance(found, ChangedPages):
            cur.execute(*count_statement(config, spec, action, state, search=False))
            rows = cur.fetchone()[0]
            missed: list[str] = []
            skews: list[float] = []
            if found.ranges:
                cur.execute(search_statement(config, spec, found, missed_filter(spec)),
                            search_params(state))
                for ctid, behind in cur.fetchall():
                    missed.append(ctid)
                    skews.append(float(behind))
            if still_valid(cur, table, found):
                return SourceCount(rows, missed, max(skews, default=None), found.describe)
            found = "a vacuum ran on the table while its changed pages were read"
        full_scan += f" ({found})"
    cur.execute(*count_statement(config, spec, action, state))
    rows, missed, skew = cur.fetchone()
    return SourceCount(int(rows), missed or [], None if skew is None else float(skew),
                       full_scan if searches(spec, action, state) else None)
