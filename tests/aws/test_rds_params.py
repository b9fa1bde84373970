"""RDS URLs keep their query string (sslmode, sslrootcert, options) on the way to psycopg2,
psql and dbt."""

from __future__ import annotations

import os
import urllib.parse

import psycopg2.extensions

from loader.config import dbt_environment, load_settings
from loader.db import connect_raw
from loader.orchestrate.dbt import run_dbt

RDS_QUERY = (
    "sslmode=require&sslrootcert=/etc/ssl/rds-global-bundle.pem&options=-c%20search_path%3Dops"
)


def test_query_string_reaches_the_psycopg2_dsn_unchanged(tmp_path):
    s = load_settings({
        "ELT_HOME": str(tmp_path),
        "ELT_WAREHOUSE_URL": f"postgresql://etl:pw@db.rds.amazonaws.com:5432/dw?{RDS_QUERY}",
        "ELT_SOURCE_URL": "postgresql://ro@app:5432/shop",
        "ELT_SOURCE_SSLMODE": "verify-full",
    })
    dsn = psycopg2.extensions.parse_dsn(s.warehouse.dsn)
    assert dsn["sslmode"] == "require"
    assert dsn["sslrootcert"] == "/etc/ssl/rds-global-bundle.pem"
    assert dsn["options"] == "-c search_path=ops"
    assert psycopg2.extensions.parse_dsn(s.source.dsn)["sslmode"] == "verify-full"
    assert "sslmode=require" in s.warehouse.display and "pw" not in s.warehouse.display
    # the SQLAlchemy URL carries the same parameters to the psycopg2 dialect
    assert urllib.parse.urlsplit(s.warehouse.sqlalchemy_url).query == s.warehouse.query[1:]


def test_query_string_reaches_the_dbt_environment(tmp_path):
    s = load_settings({
        "ELT_HOME": str(tmp_path),
        "ELT_WAREHOUSE_URL": f"postgresql://etl:pw@db.rds.amazonaws.com:5432/dw?{RDS_QUERY}",
    })
    env = dbt_environment(s)
    assert env["ELT_WAREHOUSE_SSLMODE"] == "require"  # the profile's sslmode field
    assert env["PGSSLMODE"] == "require"
    assert env["PGSSLROOTCERT"] == "/etc/ssl/rds-global-bundle.pem"
    assert env["PGOPTIONS"] == "-c search_path=ops"
    assert "ELT_WAREHOUSE_PASSWORD" not in env  # only the scrubbed DBT_ENV_SECRET_ name
    assert env["DBT_ENV_SECRET_ELT_WAREHOUSE_PASSWORD"] == "pw"


def test_sslmode_and_options_reach_a_real_connection_and_dbt(settings, tmp_path):
    """Against the embedded server (no SSL there: sslmode=disable), the options of the URL
    are in force in the loader's connection and in dbt's."""
    wh = settings.warehouse
    url = (f"postgresql://{wh.user}@{wh.host}:{wh.port}/{wh.database}"
           "?sslmode=disable&options=-c%20statement_timeout%3D4321")
    s = load_settings({"ELT_HOME": str(tmp_path), "ELT_PG_PORT": str(settings.port),
                       "ELT_WAREHOUSE_URL": url})
    conn = connect_raw(s.warehouse)
    try:
        assert conn.info.dsn_parameters["sslmode"] == "disable"
        with conn.cursor() as cur:
            cur.execute("show statement_timeout")
            assert cur.fetchone()[0] == "4321ms"
    finally:
        conn.close()
    own = {"DBT_TARGET_PATH": str(tmp_path / "target"), "DBT_LOG_PATH": str(tmp_path / "logs")}
    debug = run_dbt(s, "debug", env=own)
    assert "sslmode: disable" in debug.stdout
    shown = run_dbt(s, "show", "--inline",
                    "select current_setting('statement_timeout') as timeout_setting",
                    "--target-path", own["DBT_TARGET_PATH"], env=own)
    assert "4321ms" in shown.stdout, shown.stdout[-2000:]
    assert os.environ.get("PGOPTIONS") is None  # nothing leaked into this process


def test_sslmode_require_reaches_the_connections_of_the_loader_and_dbt(settings, tmp_path):
    """The embedded server is built without SSL: with sslmode=require both the loader's
    psycopg2 and dbt's are refused for want of SSL, which only the parameter can cause."""
    import pytest

    from loader.db import ConnectFailed

    wh = settings.warehouse
    url = f"postgresql://{wh.user}@{wh.host}:{wh.port}/{wh.database}?sslmode=require"
    s = load_settings({"ELT_HOME": str(tmp_path), "ELT_PG_PORT": str(settings.port),
                       "ELT_WAREHOUSE_URL": url})
    with pytest.raises(ConnectFailed, match="does not support SSL"):
        connect_raw(s.warehouse)
    own = {"DBT_TARGET_PATH": str(tmp_path / "target"), "DBT_LOG_PATH": str(tmp_path / "logs")}
    debug = run_dbt(s, "debug", check=False, env=own)
    assert debug.returncode != 0
    assert "sslmode: require" in debug.stdout
    assert "does not support SSL" in debug.stdout, debug.stdout[-2000:]
