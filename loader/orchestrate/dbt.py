"""Run dbt in the project with the warehouse's profile variables."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from psycopg2 import sql

from loader import children, credentials
from loader.config import PROJECT_ROOT, Settings, UserError, dbt_environment, dbt_schema
from loader.db import Session, execute
from loader.packages import ensure_packages

# elementary's tables its monitors read and write while they run: a monitor started before
# they exist fails ("relation none"), and dbt does not order the package's models first
ELEMENTARY_TABLES = ("data_monitoring_metrics", "schema_columns_snapshot")

# under the run lock every load has committed before dbt reads raw (`elt load` and the Dagster
# load take the same lock), so the incremental models need no lookback window here
DBT_VARS = '{"incremental_lookback": "0 seconds"}'

# the --vars of every dbt command `elt run` runs in the project's target (the build,
# elementary's models, the publish): the same on every run, because dbt parses the whole
# project again whenever a var's value changes (about 11 s against 3-4 s for a partial parse
# on this machine, docs/benchmarks.md). test_since says previous_build: the row-by-row tests
# read the scope this run recorded for its build (history.note_build_started) from the run
# history when they run (macros/tests/get_where_subquery.sql); none there means every row
BUILD_VARS = json.dumps({**json.loads(DBT_VARS), "test_since": "previous_build"})


class DbtFailed(UserError, RuntimeError):
    """A dbt command exited non-zero; the message holds the end of its output."""


def dbt_executable() -> str:
    candidate = Path(sys.executable).with_name("dbt")
    return str(candidate) if candidate.exists() else "dbt"


def target_path() -> Path:
    """Where dbt writes its artifacts: DBT_TARGET_PATH when set, else the project's target/."""
    return PROJECT_ROOT / os.environ.get("DBT_TARGET_PATH", "target")


# dbt's line for a node that ended: "12:00:01  57 of 190 OK created sql table model ..."
# (OK, PASS, WARN, FAIL, ERROR, SKIP, NO-OP, ...: any status word but START)
_NODE_LINE = re.compile(r"\b(\d+) of (\d+) ([A-Z][A-Z-]+)\b")


class DbtProgress:
    """Turns the lines of a running dbt command into a progress line every `every` seconds
    (and at the last node): `57/190 nodes done (2 failed)`, handed to `say`."""

    def __init__(self, say: Callable[[str], None], every: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        self.say, self.every, self.clock = say, every, clock
        self.done = self.total = self.failed = 0
        self._last = clock()

    def __call__(self, line: str) -> None:
        match = _NODE_LINE.search(line)
        if not match or match.group(3) == "START" or "hook: " in line:
            return  # on-run-start/end hooks count "1 of 3" among themselves
        self.done, self.total = self.done + 1, int(match.group(2))
        self.failed += match.group(3) in ("FAIL", "ERROR")
        now = self.clock()
        if now - self._last >= self.every or self.done == self.total:
            self._last = now
            failed = f" ({self.failed} failed)" if self.failed else ""
            self.say(f"{self.done}/{self.total} nodes done{failed}")


def run_dbt(
    settings: Settings,
    *args: str,
    check: bool = True,
    env: dict[str, str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> subprocess.CompletedProcess:
    """dbt `args` in the project; with `progress`, its output is read as it comes and a
    line of progress is handed to `progress` every few seconds (DbtProgress)."""
    # a secret or a fresh IAM token, read now: dbt gets it in its environment, never a file
    live = credentials.live(settings.warehouse)
    env = {**os.environ, **dbt_environment(settings, live), **(env or {})}
    if args and args[0] not in ("deps", "clean", "debug"):
        ensure_packages(PROJECT_ROOT, settings.dbt_packages_mirror, env=env)
    command = [dbt_executable(), *args]
    if progress is None:
        result = children.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True,
                              text=True)
    else:
        env["PYTHONUNBUFFERED"] = "1"  # each line as dbt writes it, not when a buffer fills
        result = children.stream(command, DbtProgress(progress), cwd=PROJECT_ROOT, env=env)
    if check and result.returncode != 0:
        tail = "\n".join(result.stdout.splitlines()[-30:])
        raise DbtFailed(f"`dbt {' '.join(args)}` failed (exit {result.returncode}):\n{tail}")
    return result


def elementary_version() -> str:
    """The version of elementary's dbt package installed in the project (dbt_packages/)."""
    path = PROJECT_ROOT / "dbt_packages" / "elementary" / "dbt_project.yml"
    found = re.search(r"^version:\s*['\"]?([^'\"\s]+)", path.read_text(), re.M)
    return found.group(1) if found else "unknown"


def ensure_elementary_models(settings: Settings) -> bool:
    """elementary's own models (its tables of results, artifacts and metrics, and the views
    `edr` reads) are built by `dbt run --select elementary`, as its docs ask after installing
    or upgrading the package, not by every build (`elt run` builds with --exclude
    package:elementary: they hold nothing a build changes, and rebuilding them took about
    20 s of every build). Runs it on a warehouse elementary has not set up yet or set up with
    another version of the package, and marks the schema with the version. True when it ran."""
    schema = dbt_schema(settings.env, "elementary")
    stamp = f"elementary {elementary_version()}"
    with Session(settings.warehouse, "reading elementary's schema") as session:
        [(missing, marked)] = session.query(
            "select count(*) filter (where to_regclass(t) is null), "
            "obj_description(to_regnamespace(%s), 'pg_namespace') "
            "from unnest(%s::text[]) as t",
            (f'"{schema}"', [f'"{schema}"."{table}"' for table in ELEMENTARY_TABLES]),
        )
    if not missing and marked == stamp:
        return False
    run_dbt(settings, "run", "--select", "package:elementary", "--vars", BUILD_VARS)
    execute(settings.warehouse, sql.SQL("comment on schema {} is {}").format(
        sql.Identifier(schema), sql.Literal(stamp)))
    return True


def run_results(target: Path | None = None) -> dict[str, int]:
    """Counts of dbt results by status from the last invocation's run_results.json."""
    path = (target or target_path()) / "run_results.json"
    if not path.exists():
        return {}
    counts: dict[str, int] = {}
    for result in json.loads(path.read_text()).get("results", []):
        counts[result["status"]] = counts.get(result["status"], 0) + 1
    return counts


def test_results(target: Path | None = None) -> dict[str, int]:
    """pass / warn / fail / error counts of the tests of the last invocation."""
    path = (target or target_path()) / "run_results.json"
    if not path.exists():
        return {}
    counts: dict[str, int] = {}
    for result in json.loads(path.read_text()).get("results", []):
        if result["unique_id"].startswith(("test.", "unit_test.")):
            counts[result["status"]] = counts.get(result["status"], 0) + 1
    return counts


def source_freshness(settings: Settings, target: Path) -> dict[str, str]:
    """`dbt source freshness` into its own target and log folder (two dbt processes must not
    share them; the same --vars as the build keep its partial parse valid): the status of
    every source table (pass, warn, error, runtime error) by table name. Raises when dbt
    itself failed (exit 2); a stale source (exit 1) is a status, not an error."""
    result = run_dbt(
        settings, "source", "freshness", "--vars", DBT_VARS,
        "--target-path", str(target), "--log-path", str(target), check=False,
    )
    if result.returncode not in (0, 1):  # 1: a source is stale (reported), 2: dbt error
        raise DbtFailed(f"`dbt source freshness` failed (exit {result.returncode}):\n"
                        + result.stdout[-2000:])
    path = target / "sources.json"
    found = json.loads(path.read_text()).get("results", []) if path.exists() else []
    return {r["unique_id"].rsplit(".", 1)[-1]: r["status"] for r in found}


def dbt_project_hash(env: str = "dev") -> str:
    """A digest of the dbt project's files and the environment (dbt target) it builds: a
    changed model must be built even with no new data, and a build of another environment
    on the same warehouse is not this one's."""
    digest = hashlib.sha256(f"target={env}\n".encode())
    for folder in ("models", "macros", "snapshots", "seeds", "tests/dbt"):
        for path in sorted((PROJECT_ROOT / folder).rglob("*")):
            if path.is_file():
                digest.update(str(path.relative_to(PROJECT_ROOT)).encode())
                digest.update(path.read_bytes())
    digest.update((PROJECT_ROOT / "dbt_project.yml").read_bytes())
    return digest.hexdigest()
