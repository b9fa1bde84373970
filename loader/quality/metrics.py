"""Daily metrics of the monitored tables, measured set-based and kept in quality.metrics."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import psycopg2.extensions
from psycopg2 import sql

from loader.quality.monitors import Monitor
from loader.quality.store import insert_rows

CATEGORY_PREFIX = "category="


def _table(name: str) -> sql.Composed:
    schema, table = name.split(".", 1)
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


def exists(conn: psycopg2.extensions.connection, table: str) -> bool:
    schema, name = table.split(".", 1)
    with conn.cursor() as cur:
        cur.execute("select to_regclass(%s) is not null", (f'"{schema}"."{name}"',))
        return bool(cur.fetchone()[0])


def _day(value: datetime | date | None) -> date | None:
    """A timestamp's date in UTC (the report's session time zone), as `::date` gives it."""
    if isinstance(value, datetime):
        return (value.astimezone(UTC) if value.tzinfo else value).date()
    return value


def data_clock(
    conn: psycopg2.extensions.connection,
    monitors: tuple[Monitor, ...],
    known_newest: Callable[[str, str], datetime | date | None] | None = None,
) -> date | None:
    """The last complete day of the data: the day before the newest monitored timestamp.

    Judging against the data's own clock (not the wall clock) lets a history that ends in the
    past be judged; a table that stops while the others go on is still caught (its volume
    drops, its freshness grows), and wall-clock staleness is the freshness checks' job.
    `known_newest(table, column)` gives a newest value this report has already read (or
    raises KeyError)."""
    newest = None
    for m in monitors:
        if not exists(conn, m.table):
            continue
        try:
            if known_newest is None:
                raise KeyError(m.table)
            day = _day(known_newest(m.table, m.timestamp))
        except KeyError:
            with conn.cursor() as cur:
                cur.execute(
                    sql.SQL("select max({})::date from {}").format(
                        sql.Identifier(m.timestamp), _table(m.table)
                    )
                )
                day = cur.fetchone()[0]
        if day is not None and (newest is None or day > newest):
            newest = day
    return newest - timedelta(days=1) if newest else None


def measure(
    conn: psycopg2.extensions.connection, m: Monitor, start: date, end: date
) -> list[tuple[str, str, str, date, float | None]]:
    """(table, column, metric, day, value) for every day in [start, end], in two queries:
    one for volume, freshness and column metrics, one per categorical column."""
    ts = sql.Identifier(m.timestamp)
    table = _table(m.table)
    exprs: list[sql.Composable] = []
    names: list[tuple[str, str]] = []
    for col, metrics in m.columns.items():
        c = sql.Identifier(col)
        for metric in metrics:
            names.append((col, metric))
            exprs.append(
                {
                    "null_pct": sql.SQL(
                        "100.0 * count(*) filter (where {} is null) / nullif(count(*), 0)"
                    ),
                    "average": sql.SQL("avg({})::float8"),
                    "distinct_count": sql.SQL("count(distinct {})"),
                }[metric].format(c)
            )
    inner = sql.SQL(", ").join(
        [sql.SQL("count(*) as row_count"), sql.SQL("max({}) as newest").format(ts)]
        + [sql.SQL("{} as {}").format(e, sql.Identifier(f"m{i}")) for i, e in enumerate(exprs)]
    )
    outer = sql.SQL("").join(
        sql.SQL(", per_day.{}").format(sql.Identifier(f"m{i}")) for i in range(len(exprs))
    )
    query = sql.SQL(
        """
        with days as (
            select d::date as bucket
            from generate_series(%(start)s::date, %(end)s::date, interval '1 day') as d
        ),
        per_day as (
            select {ts}::date as bucket, {inner}
            from {table}
            where {ts} >= %(start)s::date and {ts} < %(end)s::date + 1
            group by 1
        ),
        before as (
            select max({ts}) as newest from {table} where {ts} < %(start)s::date
        )
        select
            days.bucket,
            coalesce(per_day.row_count, 0)::float8,
            extract(epoch from (days.bucket + 1)::timestamptz - greatest(
                max(per_day.newest) over (order by days.bucket), (select newest from before)
            ))::float8 / 3600{outer}
        from days left join per_day on per_day.bucket = days.bucket
        order by days.bucket
        """
    ).format(ts=ts, inner=inner, table=table, outer=outer)
    params = {"start": start, "end": end}
    out: list[tuple[str, str, str, date, float | None]] = []
    with conn.cursor() as cur:
        cur.execute(query, params)
        for bucket, volume, freshness, *values in cur.fetchall():
            if m.volume:
                out.append((m.table, "", "volume", bucket, volume))
            if m.freshness:
                out.append((m.table, "", "freshness_hours", bucket, freshness))
            for (col, metric), v in zip(names, values, strict=True):
                out.append((m.table, col, metric, bucket, float(v) if v is not None else None))
        for col in m.categories:
            cur.execute(
                sql.SQL(
                    """select {ts}::date, coalesce({c}::text, '(null)'), count(*)::float8
                       from {table}
                       where {ts} >= %(start)s::date and {ts} < %(end)s::date + 1
                       group by 1, 2"""
                ).format(ts=ts, c=sql.Identifier(col), table=table),
                params,
            )
            out.extend(
                (m.table, col, CATEGORY_PREFIX + value, day, n) for day, value, n in cur.fetchall()
            )
    return out


def store(
    conn: psycopg2.extensions.connection,
    run_id: str,
    rows: list[tuple[str, str, str, date, float | None]],
    m: Monitor,
    start: date,
    end: date,
) -> None:
    """Overwrite the window's days: a category missing on a day today counts as 0 then."""
    with conn.cursor() as cur:
        cur.execute(
            "delete from quality.metrics where table_name = %s and bucket_date between %s and %s",
            (m.table, start, end),
        )
    insert_rows(
        conn,
        "quality.metrics",
        ("table_name", "column_name", "metric", "bucket_date", "value", "run_id"),
        [(*r, run_id) for r in rows],
    )


def load_series(
    conn: psycopg2.extensions.connection, table: str, start: date, end: date
) -> dict[tuple[str, str], dict[date, float | None]]:
    """The stored history of a table's metrics: {(column, metric): {day: value}}."""
    series: dict[tuple[str, str], dict[date, float | None]] = defaultdict(dict)
    with conn.cursor() as cur:
        cur.execute(
            """select column_name, metric, bucket_date, value from quality.metrics
               where table_name = %s and bucket_date between %s and %s""",
            (table, start, end),
        )
        for col, metric, day, value in cur.fetchall():
            series[(col, metric)][day] = value
    return series


def amount_outliers(
    conn: psycopg2.extensions.connection,
    m: Monitor,
    column: str,
    training: tuple[date, date],
    detection: tuple[date, date],
    k: float,
    sample: int = 5,
) -> tuple[int, dict[str, float] | None, list[dict]]:
    """Positive amounts in the detection period outside the training period's log-scale
    Tukey fences (q1 - k*IQR, q3 + k*IQR). Amounts are heavy-tailed, so the fences are set on
    ln(amount); non-positive amounts are business-rule failures that dbt tests catch."""
    ts, c, table = sql.Identifier(m.timestamp), sql.Identifier(column), _table(m.table)
    query = sql.SQL(
        """
        with fences as (
            select q[1] - %(k)s * (q[3] - q[1]) as lo, q[3] + %(k)s * (q[3] - q[1]) as hi,
                   q[2] as median
            from (
                select percentile_cont(array[0.25, 0.5, 0.75])
                       within group (order by ln({c}::float8)) as q
                from {table}
                where {ts} >= %(t0)s::date and {ts} < %(t1)s::date and {c} > 0
            ) as quartiles
        ),
        outliers as (
            select t.*
            from {table} as t, fences
            where t.{ts} >= %(d0)s::date and t.{ts} < %(d1)s::date + 1 and t.{c} > 0
              and (ln(t.{c}::float8) < fences.lo or ln(t.{c}::float8) > fences.hi)
        )
        select
            (select count(*) from outliers),
            (select exp(lo) from fences), (select exp(hi) from fences),
            (select exp(median) from fences),
            (select coalesce(jsonb_agg(to_jsonb(o) order by o.{c} desc), '[]'::jsonb)
             from (select * from outliers order by {c} desc limit %(n)s) as o)
        """
    ).format(ts=ts, c=c, table=table)
    with conn.cursor() as cur:
        cur.execute(
            query,
            {
                "k": k,
                "t0": training[0],
                "t1": training[1],
                "d0": detection[0],
                "d1": detection[1],
                "n": sample,
            },
        )
        n, lo, hi, median, rows = cur.fetchone()
    if lo is None:
        return 0, None, []
    return int(n), {"lower": lo, "upper": hi, "median": median}, rows
