"""Credentials from AWS Secrets Manager (RDS format): read at connection time, read again
after a rotation, and written nowhere."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from loader import credentials
from loader.config import load_settings
from loader.db import connect_raw, dispose_engines, transaction
from tests.conftest import create_database, query

ROLE = "elt_secret"


def rds_secret(settings, database: str, password: str) -> str:
    return json.dumps({"username": ROLE, "password": password, "engine": "postgres",
                       "host": "127.0.0.1", "port": settings.port, "dbname": database})


def set_password(settings, password: str) -> None:
    conn = connect_raw(settings.warehouse.with_database("postgres"), autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"alter role {ROLE} password %s", (password,))
    finally:
        conn.close()


@pytest.fixture(scope="module")
def password_role(settings):
    """A login role that the session server checks by password (it trusts everyone else)."""
    admin = settings.warehouse.with_database("postgres")
    conn = connect_raw(admin, autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"select 1 from pg_roles where rolname = '{ROLE}'")
        if not cur.fetchone():
            cur.execute(f"create role {ROLE} login superuser")
        cur.execute("show hba_file")
        hba = Path(cur.fetchone()[0])
    original = hba.read_text()
    rules = (f"host all {ROLE} 127.0.0.1/32 scram-sha-256\n"
             f"local all {ROLE} scram-sha-256\n")
    hba.write_text(rules + original)
    with conn.cursor() as cur:
        cur.execute("select pg_reload_conf()")
    yield ROLE
    hba.write_text(original)
    with conn.cursor() as cur:
        cur.execute("select pg_reload_conf()")
    conn.close()


def test_a_rotated_secret_is_read_again_after_the_password_is_refused(
    settings, password_role, boto, tmp_path
):
    create_database(settings, "secret_wh")
    sm = boto("secretsmanager")
    secret_id = sm.create_secret(
        Name="elt/warehouse-rotation",
        SecretString=rds_secret(settings, "secret_wh", "first-Pw-1"),
    )["ARN"]
    set_password(settings, "first-Pw-1")
    s = load_settings({"ELT_HOME": str(tmp_path), "ELT_PG_PORT": str(settings.port),
                       "ELT_WAREHOUSE_SECRET_ID": secret_id})
    assert s.warehouse.host == ""  # the location is read from the secret, at connection time
    assert query(s.warehouse, "select current_user, current_database()") == [
        (ROLE, "secret_wh")
    ]
    # rotation: the database and the secret change together, the loader still caches v1
    set_password(settings, "second-Pw-2")
    sm.put_secret_value(SecretId=secret_id,
                        SecretString=rds_secret(settings, "secret_wh", "second-Pw-2"))
    assert credentials.live(s.warehouse).password == "first-Pw-1"
    assert query(s.warehouse, "select current_user") == [(ROLE,)]
    assert credentials.live(s.warehouse).password == "second-Pw-2"
    # the pooled engine too: new connections read the rotated secret
    set_password(settings, "third-Pw-3")
    sm.put_secret_value(SecretId=secret_id,
                        SecretString=rds_secret(settings, "secret_wh", "third-Pw-3"))
    dispose_engines()
    import sqlalchemy as sa

    with transaction(s.warehouse) as conn:
        assert conn.execute(sa.text("select current_user")).scalar() == ROLE
    dispose_engines()


def test_a_wrong_secret_fails_with_advice_and_no_password(settings, password_role, boto,
                                                          tmp_path):
    sm = boto("secretsmanager")
    secret_id = sm.create_secret(
        Name="elt/warehouse-wrong",
        SecretString=rds_secret(settings, "secret_wh", "not-the-Pw-9"),
    )["ARN"]
    s = load_settings({"ELT_HOME": str(tmp_path), "ELT_PG_PORT": str(settings.port),
                       "ELT_WAREHOUSE_SECRET_ID": secret_id})
    from loader.db import ConnectFailed

    with pytest.raises(ConnectFailed) as failed:
        connect_raw(s.warehouse)
    assert "ELT_*_SECRET_ID" in str(failed.value)
    assert "not-the-Pw-9" not in str(failed.value)


@pytest.mark.slow
def test_a_run_with_a_secret_writes_its_password_nowhere(
    settings, elt_env, password_role, boto, tmp_path, monkeypatch
):
    """`elt run` with the warehouse from a secret: the password is in no file under
    ELT_HOME, dbt's target/ and logs/, or reports/ afterwards."""
    password = "Leak-Canary-7f3a9"
    create_database(settings, "secret_run_wh")
    create_database(settings, "secret_run_src")
    set_password(settings, password)
    secret_id = boto("secretsmanager").create_secret(
        Name="elt/warehouse-run", SecretString=rds_secret(settings, "secret_run_wh", password)
    )["ARN"]
    home, target, logs, reports = (tmp_path / d for d in ("home", "target", "logs", "reports"))
    monkeypatch.setenv("DBT_TARGET_PATH", str(target))
    monkeypatch.setenv("DBT_LOG_PATH", str(logs))
    s = load_settings({
        "ELT_HOME": str(home),
        "ELT_PG_PORT": str(settings.port),
        "ELT_SOURCE_URL": f"postgresql://postgres@127.0.0.1:{settings.port}/secret_run_src",
        "ELT_WAREHOUSE_SECRET_ID": secret_id,
        "ELT_REPORTS_DIR": str(reports),
        "ELT_DBT_THREADS": "2",
    })
    from loader.orchestrate import job

    printed: list[str] = []
    code = job.run_job(s, scale=0.002, echo=printed.append, base_delay=0.01)
    assert code == 0, "\n".join(printed)
    # the secret alone names that database, and its role signs in by password only
    runs = query(s.warehouse, "select status, current_database(), session_user "
                 "from ops.pipeline_runs")
    assert runs == [("success", "secret_run_wh", ROLE)]
    assert (target / "run_results.json").exists() and any(reports.iterdir())
    found = subprocess.run(["grep", "-rlaF", password, str(home), str(target), str(logs),
                            str(reports)], capture_output=True, text=True)
    assert found.returncode == 1, f"the password was written to {found.stdout}"
    assert not any(password in line for line in printed)
    dispose_engines()
