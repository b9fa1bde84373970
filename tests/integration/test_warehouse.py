"""The embedded warehouse: lifecycle, external mode, and clear errors on bad setups."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from loader import warehouse
from loader.config import load_settings
from loader.db import DatabaseUnavailable, connect_raw
from loader.errors import ExitCode
from loader.warehouse import WarehouseError
from tests.conftest import free_port, query, settings_for


def elt(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "loader.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_lifecycle_start_twice_stop_restart_keeps_data(tmp_path):
    s = settings_for(tmp_path / "home", free_port())
    first = warehouse.start(s)
    try:
        assert first.running and first.version.startswith("18")
        again = warehouse.start(s)
        assert again.pid == first.pid, "a second start must reuse the running server"
        conn = connect_raw(s.warehouse, autocommit=True)
        with conn.cursor() as cur:
            cur.execute("create table kept (x int); insert into kept values (7)")
        conn.close()
        dbs = {r[0] for r in query(s.warehouse, "select datname from pg_database")}
        assert {"source", "warehouse"} <= dbs
        assert query(s.warehouse, "show wal_level") == [("logical",)]
        assert warehouse.stop(s) is True
        assert warehouse.status(s).running is False
        assert warehouse.stop(s) is False
        # a data directory of an earlier version: its settings block is replaced at start
        conf = s.pgdata / "postgresql.conf"
        ours = f"shared_buffers = '{warehouse.shared_buffers()}'"
        conf.write_text(conf.read_text().replace(ours, "shared_buffers = '200MB'"))
        warehouse.start(s)
        assert query(s.warehouse, "select x from kept") == [(7,)]
        assert query(
            s.warehouse,
            "select setting::bigint * 8 / 1024 || 'MB' from pg_settings "
            "where name = 'shared_buffers'",
        ) == [(warehouse.shared_buffers(),)]
        assert conf.read_text().count(warehouse.SETTINGS_MARKER) == 1
    finally:
        warehouse.stop(s)


def test_status_and_url_from_the_cli(elt_env):
    status = elt("warehouse", "status", env=elt_env)
    assert status.returncode == 0, status.stderr
    assert "running: PostgreSQL 18" in status.stdout
    assert f"127.0.0.1:{elt_env['ELT_PG_PORT']}" in status.stdout
    url = elt("warehouse", "url", "--database", "source", env=elt_env)
    assert url.stdout.strip() == f"postgresql://postgres@127.0.0.1:{elt_env['ELT_PG_PORT']}/source"


def test_external_mode_starts_nothing(tmp_path, elt_env):
    port = elt_env["ELT_PG_PORT"]
    s = load_settings({
        "ELT_HOME": str(tmp_path / "unused"),
        "ELT_WAREHOUSE_URL": f"postgresql://postgres@127.0.0.1:{port}/warehouse",
        "ELT_SOURCE_URL": f"postgresql://postgres@127.0.0.1:{port}/source",
    })
    st = warehouse.start(s)
    assert st.mode == "external" and st.running
    assert not (tmp_path / "unused").exists(), "external mode must not create a data dir"


def test_no_password_is_ever_printed(tmp_path, elt_env):
    secret = "Sup3r-S3cret-pw"
    port = elt_env["ELT_PG_PORT"]
    env = {
        "ELT_HOME": str(tmp_path),
        "ELT_WAREHOUSE_URL": f"postgresql://postgres:{secret}@127.0.0.1:{port}/warehouse",
        "ELT_SOURCE_URL": "postgresql://postgres@127.0.0.1:1/source",
        "ELT_SOURCE_PASSWORD": secret,
    }
    outputs = [
        elt("warehouse", "url", env=env),
        elt("warehouse", "status", env=env),
        elt("warehouse", "url", "--database", "source", env=env),
        elt("source", "advance", env=env),  # the source is unreachable: an error path
    ]
    for out in outputs:
        assert secret not in out.stdout + out.stderr
    # refused through every retry: the source is unavailable (exit 3), said in one line
    assert outputs[-1].returncode == ExitCode.UNAVAILABLE == 3
    assert "127.0.0.1:1" in outputs[-1].stderr


def test_unreachable_external_server_is_retried_then_reported(tmp_path, monkeypatch):
    slept = []
    monkeypatch.setattr("loader.db.time.sleep", slept.append)
    s = load_settings({
        "ELT_HOME": str(tmp_path),
        "ELT_WAREHOUSE_URL": "postgresql://postgres@127.0.0.1:1/warehouse",
        "ELT_SOURCE_URL": "postgresql://postgres@127.0.0.1:1/source",
    })
    with pytest.raises(DatabaseUnavailable, match=r"(?s)failed after 5 attempts.*warehouse status"):
        connect_raw(s.warehouse)
    assert len(slept) == 4, "connection refused is transient: retried with backoff"


def test_port_taken_by_another_program_is_reported(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        s = settings_for(tmp_path, port)
        with pytest.raises(WarehouseError, match=f"port {port} on 127.0.0.1 is taken.*ELT_PG_PORT"):
            warehouse.start(s)


def test_data_dir_of_another_major_version_is_reported(tmp_path):
    s = settings_for(tmp_path, free_port())
    s.pgdata.mkdir(parents=True)
    (s.pgdata / "PG_VERSION").write_text("15\n")
    with pytest.raises(WarehouseError, match="made by PostgreSQL 15.*pg_dump 15"):
        warehouse.start(s)


def test_bad_cli_input_gets_a_clear_error(elt_env):
    unknown = elt("warehous", env=elt_env)
    assert unknown.returncode == 2 and "invalid choice: 'warehous'" in unknown.stderr
    option = elt("source", "init", "--sclae", "1", env=elt_env)
    assert option.returncode == 2 and "unrecognized arguments: --sclae" in option.stderr
    for scale in ("-1", "1000"):
        bad = elt("source", "init", "--scale", scale, env=elt_env)
        assert bad.returncode == 2
        assert "scale" in bad.stderr and "out of range" in bad.stderr
        assert "Traceback" not in bad.stderr
    days = elt("source", "advance", "--days", "0", env=elt_env)
    assert days.returncode == 2 and "days 0 is out of range" in days.stderr
