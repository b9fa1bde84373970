"""The `elt` commands in-process: what a user types and what it prints."""

from __future__ import annotations

import json

import pytest

from loader.cli import main
from loader.source import simulator
from loader.source.simulator import SimConfig
from tests.conftest import SIM_END, TEST_DEFAULTS, create_database, create_warehouse


@pytest.fixture()
def cli_env(monkeypatch, settings, elt_env, tmp_path):
    port = elt_env["ELT_PG_PORT"]
    create_database(settings, "cli_src")
    create_warehouse(settings, "cli_wh")
    env = {
        "ELT_HOME": str(tmp_path),
        "ELT_PG_PORT": port,
        "ELT_SOURCE_URL": f"postgresql://postgres@127.0.0.1:{port}/cli_src",
        "ELT_WAREHOUSE_URL": f"postgresql://postgres@127.0.0.1:{port}/cli_wh",
        **TEST_DEFAULTS,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def test_source_load_status_reconcile_from_the_command_line(cli_env, capsys, settings):
    assert main(["source", "init", "--scale", "0.002", "--end-date", str(SIM_END)]) == 0
    out = capsys.readouterr().out
    assert "source initialised at scale 0.002" in out and "customers" in out
    assert main(["load"]) == 0
    out = capsys.readouterr().out
    assert "initial" in out and "MISMATCH" not in out
    assert main(["source", "advance", "--days", "1"]) == 0
    assert main(["load", "bids"]) == 0
    assert "increment" in capsys.readouterr().out
    assert main(["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert {t["table"] for t in status["tables"]} == set(simulator.TABLES)
    assert main(["status"]) == 0
    assert "watermark" in capsys.readouterr().out
    assert main(["reconcile", "bids", "customers"]) in (0, 1)
    assert main(["reconcile", "--deep"]) == 0
    assert "deep reconciliation" in capsys.readouterr().out
    assert main(["backfill", "orders", "--start", "2000-01-01", "--end", "2100-01-01"]) == 0
    assert "backfill" in capsys.readouterr().out


def test_warehouse_commands_in_external_mode(cli_env, capsys):
    assert main(["warehouse", "start"]) == 0
    assert "nothing started" in capsys.readouterr().out
    assert main(["warehouse", "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mode"] == "external"
    assert main(["warehouse", "url", "--database", "other"]) == 0
    assert capsys.readouterr().out.strip().endswith("/other")


def test_cli_errors_are_one_line_without_traceback(cli_env, capsys):
    assert main(["backfill", "orders", "--start", "2026-02-01", "--end", "2026-01-01"]) == 2
    assert "must be before" in capsys.readouterr().err
    assert main(["load", "no_such_table"]) == 2
    assert "unknown table(s) no_such_table" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["backfill", "orders", "--start", "yesterday", "--end", "2026-01-01"])
    assert "not an ISO timestamp" in capsys.readouterr().err


def test_simulator_state_is_readable(cli_env, settings):
    endpoint = settings.source.with_database("cli_src")
    simulator.init(endpoint, SimConfig(scale=0.001, end_date=SIM_END), force=True)
    assert simulator.state(endpoint)["seed"] == 42


def test_elt_run_builds_loads_and_models_end_to_end(cli_env, capsys, settings):
    from tests.conftest import query

    assert main(["run", "--scale", "0.002"]) == 0
    out = capsys.readouterr().out
    assert "SUCCESS" in out and "dbt tests:" in out and "MISMATCH" not in out
    # the tests' environment sets ELT_HTML_REPORT=false: the summary says where the HTML is not
    assert "report: quality.json only (ELT_HTML_REPORT=false)" in out
    wh = settings.warehouse.with_database("cli_wh")
    marts = query(wh, "select count(*) from dev_marts.fct_orders")[0][0]
    assert marts > 0
    # a second run with no source change extracts nothing and leaves the marts as they were
    assert main(["run"]) == 0
    out = capsys.readouterr().out
    assert query(wh, "select count(*) from dev_marts.fct_orders")[0][0] == marts
    assert [line.split()[1] for line in out.splitlines() if line.strip().startswith("orders ")] \
        == ["0"]


def test_load_is_refused_while_a_run_holds_the_lock(cli_env, capsys, settings):
    from loader.config import load_settings
    from loader.orchestrate.history import RunLock

    s = load_settings()
    holder = RunLock(s.warehouse)
    holder.acquire()
    try:
        assert main(["load"]) == 2
        assert "another elt run is in progress" in capsys.readouterr().err
    finally:
        holder.release()
