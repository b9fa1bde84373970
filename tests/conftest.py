"""Shared fixtures: one real embedded PostgreSQL for the whole test session."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from loader import warehouse
from loader.config import PROJECT_ROOT, Settings, load_settings
from loader.db import connect_raw
from loader.orchestrate import dbt
from loader.packages import ensure_packages

SIM_END = date(2026, 6, 30)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def offline_packages() -> dict[str, str]:
    """The dbt packages mirror of this machine (.ci/run sets it), for settings built from a
    dict rather than the environment: without it they would try the dbt hub."""
    mirror = os.environ.get("ELT_DBT_PACKAGES_MIRROR", "")
    return {"ELT_DBT_PACKAGES_MIRROR": mirror} if mirror else {}


# elementary's HTML report (`edr report`, 20-25 s a run) is rendered by the tests that look
# at it (test_quality_report, test_readme, the browser tests); the other tests' runs write
# quality.json only, as ELT_HTML_REPORT=false does for a user
TEST_DEFAULTS = {"ELT_ENV": "dev", "ELT_HTML_REPORT": "false"}


def settings_for(home: Path, port: int, **extra: str) -> Settings:
    env = {"ELT_HOME": str(home), "ELT_PG_PORT": str(port), **TEST_DEFAULTS,
           **offline_packages(), **extra}
    return load_settings(env)


@pytest.fixture(scope="session")
def elt_env() -> Iterator[dict[str, str]]:
    """The environment of the session server, for tests that run the CLI in a subprocess.

    Its home is outside pytest's temp root, which another pytest session on the machine may
    lock down (chmod 700) while this server still needs to reach it as its own user."""
    home = Path(tempfile.mkdtemp(prefix="elt-test-"))
    env = {"ELT_HOME": str(home), "ELT_PG_PORT": str(free_port()), **TEST_DEFAULTS,
           **offline_packages()}
    settings = load_settings(env)
    # the tests run dbt themselves: its packages first (from ELT_DBT_PACKAGES_MIRROR offline)
    ensure_packages(PROJECT_ROOT, settings.dbt_packages_mirror, env=dict(os.environ))
    warehouse.start(settings)
    yield env
    warehouse.stop(settings)
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(elt_env: dict[str, str]) -> Settings:
    return load_settings(elt_env)


def create_database(settings: Settings, name: str, template: str | None = None) -> None:
    conn = connect_raw(settings.warehouse.with_database("postgres"), autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f'drop database if exists "{name}" with (force)')
            cur.execute(f'create database "{name}"' + (f' template "{template}"' if template
                                                     else ""))
    finally:
        conn.close()


ELEMENTARY_TEMPLATE = "elt_template_wh"
_templates: set[int] = set()


def elementary_template(settings: Settings) -> str:
    """A warehouse database in which elementary has set up its own models, as the first
    `elt run` of a warehouse does (`dbt run --select package:elementary`, about 30 s), made
    once per session and server. Tests whose `elt run` starts on a new warehouse clone it
    (create_warehouse): that setup is not what they test. test_readme's new user, whose
    warehouse is new, pays it, and test_runner checks the setup on a clone is skipped."""
    if settings.warehouse.port not in _templates:
        create_database(settings, ELEMENTARY_TEMPLATE)
        template = dataclasses.replace(
            settings, warehouse=settings.warehouse.with_database(ELEMENTARY_TEMPLATE))
        assert dbt.ensure_elementary_models(template), "a new warehouse has no elementary"
        _templates.add(settings.warehouse.port)
    return ELEMENTARY_TEMPLATE


def create_warehouse(settings: Settings, name: str) -> None:
    """An empty warehouse database, but for elementary's models (elementary_template)."""
    create_database(settings, name, template=elementary_template(settings))


def query(endpoint, sql: str, params=None) -> list[tuple]:
    conn = connect_raw(endpoint)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.rollback()
        conn.close()


def private_settings(settings: Settings, name: str, home: Path) -> Settings:
    """The session server's settings with a source and a warehouse of their own (databases
    `<name>_source` and `<name>_warehouse`, made empty) and a private home."""
    create_database(settings, f"{name}_source")
    create_database(settings, f"{name}_warehouse")
    return dataclasses.replace(
        settings,
        source=settings.source.with_database(f"{name}_source"),
        warehouse=settings.warehouse.with_database(f"{name}_warehouse"),
        home=home,
    )


# a local JSON webhook server and SMTP server that record what the alerts send
class Inbox:
    def __init__(self) -> None:
        self.posts: list[tuple[str, dict]] = []
        self.mails: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd handler hook
        self.mails.append(envelope.content)
        return "250 OK"


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int, int]]:
    box = Inbox()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            box.posts.append((self.path, json.loads(body)))
            status = 500 if self.path == "/broken" else 200
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    smtp_port = free_port()
    smtp = Controller(box, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    yield box, http.server_address[1], smtp_port
    smtp.stop()
    http.shutdown()
