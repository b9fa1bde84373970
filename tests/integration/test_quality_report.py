"""`elt report` end to end: a small source loaded by the real loader, `dbt build` with
elementary's package, then quality.json and elementary's HTML report (`edr report`, rendered
in headless chromium), and elementary's Slack alerts (`edr monitor`) to a local webhook."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loader.config import PROJECT_ROOT, Settings
from loader.extract.pipeline import run_load
from loader.extract.tables import load_config
from loader.quality import QualityReport, build_report
from loader.quality.elementary import internal_project, send_slack_alerts
from loader.source import simulator
from loader.source.simulator import SimConfig
from tests.conftest import SIM_END, create_database, query
from tests.integration.test_dbt_project import private_dbt_env

pytestmark = pytest.mark.slow

DBT = Path(sys.executable).parent / "dbt"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


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
    env = private_dbt_env(local, home)
    done = subprocess.run(
        [str(DBT), "build"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-4000:]
    report = build_report(local, output_dir=home / "reports")
    return Built(local, report, json.loads((home / "target" / "run_results.json").read_text()))


def test_the_json_has_a_status_for_every_dbt_test_monitor_and_table(built: Built) -> None:
    payload = json.loads(built.report.json_path.read_text())
    assert payload["status"] in ("pass", "warn", "fail", "error")
    assert payload["html_error"] is None
    assert all(c["status"] in ("pass", "warn", "fail", "error", "skip") for c in payload["checks"])
    assert payload["summary"] == built.report.counts
    dbt_tests = [r for r in built.run_results["results"] if r["unique_id"].startswith("test.")]
    dbt_checks = {c["check_id"] for c in payload["checks"] if c["check_id"].startswith("dbt:test")}
    assert dbt_checks == {f"dbt:{r['unique_id']}" for r in dbt_tests}
    categories = {c["category"] for c in payload["checks"]}
    assert {"anomaly", "schema changes", "reconciliation", "schema", "duplicates",
            "referential integrity", "business rules"} <= categories
    # elementary's monitors are among them, by kind
    kinds = {c["details"].get("test") for c in payload["checks"] if c["category"] == "anomaly"}
    assert {"volume_anomalies", "freshness_anomalies", "column_anomalies",
            "dimension_anomalies"} <= kinds
    # the loader reconciled every table (source = raw), and so says the dbt test on ops
    recon = [c for c in payload["checks"] if c["check_id"].endswith(":source_vs_raw")]
    assert len(recon) == 6 and all(c["status"] == "pass" for c in recon)
    on_ops = [c for c in payload["checks"] if "source_equals_raw" in c["name"]]
    assert [c["status"] for c in on_ops] == ["pass"]


def test_failing_dbt_tests_carry_a_sample_of_their_rows(built: Built) -> None:
    warned = [c for c in built.report.checks if c.check_id.startswith("dbt:test")
              and c.status == "warn" and c.failing_rows]
    assert warned, "the dirty source should make some staging tests warn"
    assert any(0 < len(c.sample) <= 5 for c in warned)


def test_checks_are_stored_by_run_and_old_runs_dropped(built: Built) -> None:
    from loader.quality import store

    wh, run_id = built.settings.warehouse, built.report.run_id
    stored = query(wh, "select count(*) from quality.check_results where run_id = %s", (run_id,))
    kept = [c for c in built.report.checks if c.check_id != "report:elementary"]
    assert stored[0][0] == len(kept)
    conn = store.connect(wh)
    try:
        with conn.cursor() as cur:
            cur.execute("insert into quality.runs (run_id, started_at) "
                        "values ('ancient', now() - interval '400 days')")
        conn.commit()
        store.apply_retention(conn, days=90)
    finally:
        conn.close()
    assert query(wh, "select count(*) from quality.runs where run_id = 'ancient'")[0][0] == 0
    assert query(wh, "select count(*) from quality.runs where run_id = %s", (run_id,))[0][0] == 1


def test_edr_runs_offline_from_its_own_package_folder(built: Built) -> None:
    packages = built.settings.home / "edr" / "dbt_packages"
    assert {p.name for p in packages.iterdir() if p.is_dir()} == {"dbt_utils", "elementary"}
    config = (built.settings.home / "edr" / ".edr" / "config.yml").read_text()
    assert "anonymous_usage_tracking: false" in config
    # nothing is written into the elementary-data wheel (a shared virtualenv)
    assert not (internal_project() / "target").exists()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_elementarys_report_lists_the_dbt_tests_and_monitors_with_their_statuses(
    built: Built, tmp_path: Path
) -> None:
    html = built.report.html_path
    assert html.name == "elementary.html" and html.stat().st_size > 100_000
    text = rendered_text(html, "#/report/test-results", tmp_path / "profile")
    assert "Test Results" in text and "marketplace (dev)" in text
    counts = re.search(r"All \((\d+)\) Passed \((\d+)\) Warnings \((\d+)\) Errors \((\d+)\)", text)
    assert counts, text[:2000]
    dbt_tests = [r for r in built.run_results["results"] if r["unique_id"].startswith("test.")]
    assert int(counts[1]) == len(dbt_tests)
    assert int(counts[3]) == sum(r["status"] == "warn" for r in dbt_tests)
    # the project's own tests and elementary's monitors, each with a status
    for name in ("not_null", "relationships", "valid_email", "assert_cleaning_macros_behave",
                 "volume_anomalies", "freshness_anomalies", "dimension_anomalies",
                 "column_anomalies", "schema_changes"):
        assert re.search(rf"{name} (generic|singular|anomaly_detection|schema_change)?.*?"
                         r"(Passed|Warning|Failed|Error)", text), name
    assert re.search(r"Warning", text) and re.search(r"Passed", text)


def rendered_text(page: Path, fragment: str, profile: Path) -> str:
    """The page's visible text once its scripts ran, as headless chromium renders it."""
    from bs4 import BeautifulSoup

    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=15000",
         "--window-size=1600,20000", "--dump-dom", page.resolve().as_uri() + fragment],
        capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    soup = BeautifulSoup(done.stdout, "lxml")
    for tag in soup(["script", "style"]):
        tag.decompose()
    return soup.get_text(" ", strip=True)


def test_edr_monitor_sends_elementarys_alerts_to_the_slack_webhook(built: Built, inbox) -> None:
    box, port, _ = inbox
    posts = box.posts  # (path, body) of every POST
    s = dataclasses.replace(built.settings, quality=dataclasses.replace(
        built.settings.quality, slack_webhook_url=f"http://127.0.0.1:{port}/services/T/B/secret"))
    state = send_slack_alerts(s)
    assert state == "sent by edr monitor", state
    sent = json.dumps(posts)
    # the dirty source's warnings, one alert each, with their table and status
    assert len(posts) >= 3 and "stg_marketplace__" in sent and "warn" in sent, sent[:3000]
    # edr remembers what it sent: the next call has nothing new to say
    before = len(posts)
    assert send_slack_alerts(s) == "sent by edr monitor" and len(posts) == before
    assert "secret" not in (s.home / "edr" / "edr_target" / "edr.log").read_text()
