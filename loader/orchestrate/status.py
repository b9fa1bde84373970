"""`elt status`: the last runs, success rates, task durations, tables, watermarks, freshness."""

from __future__ import annotations

from psycopg2 import sql

from loader.config import Settings
from loader.db import connect_raw, qualified
from loader.extract.reconcile import reconciled_label
from loader.extract.status import loader_status
from loader.extract.tables import LoaderConfig
from loader.orchestrate import history

RUNS_SQL = """
select run_id, started_at, finished_at, status, round(duration_s::numeric, 1), error
from ops.pipeline_runs order by started_at desc limit %s
"""
RATES_SQL = """
select count(*), avg((status = 'success')::int), avg((status in ('failed', 'crashed'))::int)
from (select status from ops.pipeline_runs where status <> 'running'
      order by started_at desc limit 50) as recent
"""
TASKS_SQL = """
select task, count(*),
       percentile_cont(0.5) within group (order by duration_s),
       percentile_cont(0.95) within group (order by duration_s),
       count(*) filter (where status = 'failed')
from (select * from ops.task_runs order by started_at desc limit 2000) as recent
group by task order by task
"""


def _fetch(cur, query: str, params=None) -> list[tuple]:
    cur.execute(query, params)
    return cur.fetchall()


def run_status(settings: Settings, config: LoaderConfig, last: int = 10) -> dict:
    """Everything `elt status` shows, as one JSON-ready dict."""
    tables = [t.as_dict() for t in loader_status(settings, config)]
    out: dict = {
        "runs": {"last": [], "success_rate": None, "failure_rate": None},
        "tasks": {},
        "tables": tables,
    }
    conn = connect_raw(settings.warehouse)
    try:
        with conn.cursor() as cur:
            cur.execute("select to_regclass('ops.pipeline_runs') is not null")
            if cur.fetchone()[0]:
                history.mark_crashed(settings.warehouse)
                out["runs"]["last"] = [
                    {
                        "run_id": r[0],
                        "started_at": r[1],
                        "finished_at": r[2],
                        "status": r[3],
                        "duration_s": float(r[4]) if r[4] is not None else None,
                        "error": r[5],
                    }
                    for r in _fetch(cur, RUNS_SQL, (last,))
                ]
                n, ok, bad = _fetch(cur, RATES_SQL)[0]
                if n:
                    out["runs"].update(finished=n, success_rate=float(ok), failure_rate=float(bad))
                out["tasks"] = {
                    r[0]: {
                        "runs": r[1],
                        "p50_s": round(r[2], 2),
                        "p95_s": round(r[3], 2),
                        "failures": r[4],
                    }
                    for r in _fetch(cur, TASKS_SQL)
                }
            for table in tables:
                cur.execute("select to_regclass(%s)", (f'"{config.dataset}"."{table["table"]}"',))
                if cur.fetchone()[0] is None:
                    table["freshness_lag_s"] = None
                    continue
                cur.execute(
                    sql.SQL("select extract(epoch from now() - max(_loaded_at)) from {}").format(
                        qualified(config.dataset, table["table"])
                    )
                )
                lag = cur.fetchone()[0]
                table["freshness_lag_s"] = round(float(lag), 1) if lag is not None else None
    finally:
        conn.rollback()
        conn.close()
    return out


def render(status: dict) -> list[str]:
    """The human view of `run_status`."""
    lines = []
    runs = status["runs"]
    if runs["last"]:
        rate = runs["success_rate"]
        lines.append(
            f"last {len(runs['last'])} runs (success rate {rate:.0%} of the last "
            f"{runs.get('finished', 0)} finished):"
            if rate is not None
            else "runs:"
        )
        for r in runs["last"]:
            lines.append(
                f"  {r['run_id']:<28} {r['status']:<8} "
                f"{r['duration_s'] if r['duration_s'] is not None else '-':>7}s  "
                f"{(r['error'] or '')[:70]}"
            )
    else:
        lines.append("no runs yet: `elt run`")
    if status["tasks"]:
        lines.append(f"{'task':<16} {'runs':>5} {'p50 s':>8} {'p95 s':>8} {'failures':>8}")
        for name, t in status["tasks"].items():
            lines.append(
                f"{name:<16} {t['runs']:>5} {t['p50_s']:>8} {t['p95_s']:>8} {t['failures']:>8}"
            )
    lines.append(
        f"{'table':<12} {'mode':<9} {'watermark':<32} {'raw rows':>10} "
        f"{'source':>10} {'reconciled':>10} {'fresh (s)':>10}"
    )
    for t in status["tables"]:
        ok = reconciled_label(t["reconciled"])
        lines.append(
            f"{t['table']:<12} {t['mode']:<9} {str(t['watermark'] or '-'):<32} "
            f"{str(t['rows_in_raw'] if t['rows_in_raw'] is not None else '-'):>10} "
            f"{str(t['source_rows'] if t['source_rows'] is not None else '-'):>10} {ok:>10} "
            f"{str(t['freshness_lag_s'] if t['freshness_lag_s'] is not None else '-'):>10}"
        )
    return lines
