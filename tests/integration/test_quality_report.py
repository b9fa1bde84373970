"""`elt report` end to end: a small source loaded by the real loader, dbt build with the
results hook, the report's JSON and HTML (rendered in headless chromium)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loader.config import PROJECT_ROOT, Settings, dbt_environment
from loader.extract.pipeline import run_load
from loader.extract.tables import load_config
from loader.quality import QualityReport, build_report
from loader.quality.elementary import ElementaryUnavailable, run_elementary
from loader.source import simulator
from loader.source.simulator import SimConfig
from tests.conftest import SIM_END, create_database, free_port, query

pytestmark = pytest.mark.slow

DBT = Path(sys.executable).parent / "dbt"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CATEGORIES = {
    "schema",
    "referential integrity",
    "business rules",
    "duplicates",
    "reconciliation",
    "completeness",
    "freshness",
    "profiling",
    "anomaly",
}


@dataclasses.dataclass
class Built:
    settings: Settings
    report: QualityReport
    run_results: dict


@pytest.fixture(scope="module")
def built(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Built:
    create_database(settings, "quality_source")
    create_database(settings, "quality_warehouse")
    home = tmp_path_factory.mktemp("quality-home")
    local = dataclasses.replace(
        settings,
        home=home,
        source=settings.source.with_database("quality_source"),
        warehouse=settings.warehouse.with_database("quality_warehouse"),
    )
    simulator.init(local.source, SimConfig(scale=0.003, seed=5, end_date=SIM_END))
    run_load(local, load_config(local.tables_config))
    target = home / "target"
    env = {
        **os.environ,
        **dbt_environment(local),
        "DBT_TARGET_PATH": str(target),
        "DBT_LOG_PATH": str(home / "logs"),
        "ELT_DBT_THREADS": "2",
    }
    done = subprocess.run(
        [str(DBT), "build"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-4000:]
    report = build_report(local, output_dir=home / "reports")
    return Built(local, report, json.loads((target / "run_results.json").read_text()))


def test_the_hook_stores_every_result_of_the_build_quickly(built: Built) -> None:
    results = built.run_results["results"]
    nodes = [r for r in results if not r["unique_id"].startswith("operation.")]
    stored = query(
        built.settings.warehouse,
        "select count(*), count(distinct invocation_id) from quality.dbt_results",
    )[0]
    assert stored == (len(nodes), 1)
    statuses = dict(
        query(built.settings.warehouse, "select unique_id, status from quality.dbt_results")
    )
    assert all(statuses[r["unique_id"]] == r["status"] for r in nodes)
    # the hook itself is the last operation of the build: it must cost well under a second
    hooks = [r for r in results if r["unique_id"].startswith("operation.")]
    assert hooks and max(h["execution_time"] for h in hooks) < 1.0


def test_the_json_has_a_status_for_every_check_of_every_kind(built: Built) -> None:
    payload = json.loads(built.report.json_path.read_text())
    assert payload["status"] in ("pass", "warn", "fail", "error")
    assert {c["category"] for c in payload["checks"]} == CATEGORIES
    assert all(c["status"] in ("pass", "warn", "fail", "error", "skip") for c in payload["checks"])
    assert payload["summary"] == built.report.counts
    dbt_tests = [r for r in built.run_results["results"] if r["unique_id"].startswith("test.")]
    dbt_checks = {c["check_id"] for c in payload["checks"] if c["check_id"].startswith("dbt:test")}
    assert dbt_checks == {f"dbt:{r['unique_id']}" for r in dbt_tests}
    # the loader reconciled every table: source = raw
    recon = [c for c in payload["checks"] if c["check_id"].endswith(":source_vs_raw")]
    assert len(recon) == 6 and all(c["status"] == "pass" for c in recon)


def test_failing_dbt_tests_carry_a_sample_of_their_rows(built: Built) -> None:
    warned = [
        c
        for c in built.report.checks
        if c.check_id.startswith("dbt:")
        and c.status == "warn"
        and c.details.get("failures_relation")
    ]
    assert warned, "the dirty source should make some staging tests warn"
    for c in warned:
        assert 0 < len(c.sample) <= 5


def test_profiles_and_runs_are_stored_by_run(built: Built) -> None:
    wh, run_id = built.settings.warehouse, built.report.run_id
    profiled = query(
        wh,
        "select count(distinct schema_name || '.' || table_name) "
        "from quality.profiles where run_id = %s",
        (run_id,),
    )[0][0]
    assert profiled == 13
    orders_id = query(
        wh,
        "select null_count, distinct_count, row_count from quality.profiles "
        "where run_id = %s and table_name = 'orders' and column_name = 'order_id'",
        (run_id,),
    )[0]
    assert orders_id[0] == 0 and orders_id[1] == orders_id[2]
    checks = query(wh, "select count(*) from quality.check_results where run_id = %s", (run_id,))[
        0
    ][0]
    assert checks == len(built.report.checks)


def test_retention_drops_old_runs(built: Built) -> None:
    from loader.quality import store

    wh = built.settings.warehouse
    conn = store.connect(wh)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "insert into quality.runs (run_id, started_at) "
                "values ('ancient', now() - interval '400 days')"
            )
        conn.commit()
        store.apply_retention(conn, days=90, window_days=59)
    finally:
        conn.close()
    assert query(wh, "select count(*) from quality.runs where run_id = 'ancient'")[0][0] == 0
    assert (
        query(wh, "select count(*) from quality.runs where run_id = %s", (built.report.run_id,))[0][
            0
        ]
        == 1
    )


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_the_html_renders_offline_with_no_console_errors_and_every_check(
    built: Built, tmp_path: Path
) -> None:
    html = built.report.html_path
    dom, log = render(html, tmp_path / "profile")
    assert console_errors(log) == []
    shown = set(re.findall(r'data-check-id="([^"]+)"', dom))
    assert {c.check_id for c in built.report.checks} <= {
        s.replace("&gt;", ">").replace("&lt;", "<").replace("&amp;", "&") for s in shown
    }
    assert "<svg" in dom and "Run history" in dom
    assert not re.search(r'(src|href)="https?://', html.read_text())  # nothing fetched


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_the_console_check_would_see_an_error(tmp_path: Path) -> None:
    """The negative control: a page that throws is caught by the same console check."""
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>undefinedFunction();</script></body></html>")
    _, log = render(page, tmp_path / "profile")
    assert console_errors(log)


def render(page: Path, profile: Path) -> tuple[str, str]:
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr


def console_errors(log: str) -> list[str]:
    """Every console message (chromium logs them all at INFO, errors included): the report
    writes none, so any message is a script error or a blocked resource (CSP)."""
    return [line for line in log.splitlines() if ":CONSOLE" in line]


def test_elementary_says_plainly_when_the_hub_is_unreachable(built: Built) -> None:
    offline = dataclasses.replace(
        built.settings,
        quality=dataclasses.replace(
            built.settings.quality, dbt_hub_url=f"http://127.0.0.1:{free_port()}/api"
        ),
    )
    with pytest.raises(ElementaryUnavailable) as err:
        run_elementary(offline, echo=lambda _: None)
    message = str(err.value)
    assert "not reachable" in message and "elt report" in message
    assert str(offline.quality.reports_dir / "quality.html") in message
    assert not (offline.home / "elementary").exists()  # nothing half-installed
