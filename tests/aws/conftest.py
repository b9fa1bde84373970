"""A local AWS endpoint for the AWS tests: moto in server mode on 127.0.0.1, a free port.

Every boto3 client finds it through AWS_ENDPOINT_URL (as it would LocalStack), with dummy
credentials: nothing leaves the machine and no account is needed."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from loader.db import connect_raw
from tests.conftest import free_port

pytest.importorskip("boto3", reason="the AWS extra is not installed: pip install -e '.[aws]'")
pytest.importorskip("moto.server", reason="moto[server] is not installed (the dev extra)")


@pytest.fixture(scope="session")
def aws() -> Iterator[dict[str, str]]:
    """The moto server's environment, set in os.environ for the session's clients."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def boto(aws):
    """A boto3 client factory pointed at the moto server."""
    import boto3

    return lambda service: boto3.session.Session().client(service)


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
