"""The Dagster UI of the code location: `dagster dev` on a free port, its asset graph page
rendered in headless chromium, from the source tables to the marts."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from loader.config import PROJECT_ROOT
from tests.conftest import free_port
from tests.integration.test_dagster import Pipelines, pipelines  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# the groups of the asset graph shown expanded (the UI collapses every group by default)
SHOWN = ("source", "raw", "marts")


def graph_url(port: int) -> str:
    groups = ",".join(f"global@global:{group}" for group in SHOWN)
    return f"http://127.0.0.1:{port}/asset-groups?expanded={urllib.parse.quote(groups)}"


@pytest.fixture()
def dagster_dev(pipelines: Pipelines, tmp_path) -> Iterator[int]:  # noqa: F811
    """`dagster dev` on the code location, on a free port, over the test warehouse."""
    port = free_port()
    home = tmp_path / "dagster-home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "loader" / "dagster" / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, **pipelines.dagster_env, "DAGSTER_HOME": str(home)}
    dev = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster")), "dev", "-m",
         "loader.dagster.definitions", "-h", "127.0.0.1", "-p", str(port)],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # its webserver, daemon and code server end with it below
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5)
                break
            except OSError:
                assert dev.poll() is None and time.monotonic() < deadline, "dagster dev died"
                time.sleep(2)
        yield port
    finally:
        os.killpg(dev.pid, signal.SIGTERM)
        try:
            dev.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)


def chromium(url: str, *args: str) -> str:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--virtual-time-budget=30000", "--window-size=2600,1700", *args, url],
        capture_output=True, text=True, timeout=180, check=True,
    ).stdout


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_the_dagster_ui_shows_the_asset_graph_from_source_tables_to_marts(
    dagster_dev, tmp_path
) -> None:
    url = graph_url(dagster_dev)
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", chromium(url, "--dump-dom"), flags=re.S)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))
    assert "Global asset lineage" in text
    for group in ("source", "raw", "staging", "intermediate", "marts", "snapshots"):
        assert f" {group} " in text, group
    for asset in ("customers", "orders", "order_items", "fct_orders", "daily_revenue",
                  "dim_customers", "fct_bids"):
        assert f" {asset} " in text, f"{asset} is not in the rendered asset graph"
    # the screenshot in docs/ is refreshed on demand (ELT_REFRESH_DOCS=1), never by a plain
    # test run: `make test` leaves the checkout as it found it
    refresh = os.environ.get("ELT_REFRESH_DOCS") == "1"
    shot = (PROJECT_ROOT / "docs" if refresh else tmp_path) / "dagster-asset-graph.png"
    chromium(url, f"--screenshot={shot}")
    assert shot.stat().st_size > 50_000
