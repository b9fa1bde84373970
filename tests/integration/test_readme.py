"""The README's first steps, as a user on a machine whose port 55432 is taken would run them:
`make run` (that is, `.venv/bin/elt run`) on a fresh home with ELT_PG_PORT set elsewhere,
then every command of its "Then look at" list, word for word, from the project root."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from loader.config import PROJECT_ROOT
from tests.conftest import free_port, offline_packages

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def look_at_items() -> list[str]:
    """The bullet points under "Then look at:" in the README."""
    text = (PROJECT_ROOT / "README.md").read_text()
    section = text.split("Then look at:\n", 1)[1].split("\n\n", 1)[0]
    return [item.strip() for item in re.split(r"^- ", section, flags=re.M) if item.strip()]


def commands(item: str) -> list[str]:
    """The shell commands quoted in one item: what starts with .venv/bin or a variable."""
    quoted = re.findall(r"`([^`]+)`", item.replace("\n  ", " "))
    return [q for q in quoted if q.startswith((".venv/bin/", "DBT_PROFILES_DIR="))]


def shell(command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def user_env(tmp_path_factory) -> dict[str, str]:
    """A user's shell: none of the variables the tests set, a fresh home, another port."""
    home = tmp_path_factory.mktemp("readme-home")
    port = str(free_port())
    assert port != "55432"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ELT_", "DBT_"))}
    # ... but this machine's: offline, the README has the user name the dbt packages mirror
    env.update(offline_packages())
    env.update({"ELT_HOME": str(home), "ELT_PG_PORT": port,
                # the report goes beside the home, not into the checkout's reports/
                "ELT_REPORTS_DIR": str(home / "reports")})
    if BIN.parent != PROJECT_ROOT / ".venv":
        pytest.skip("the README's commands name .venv/bin: run the tests from the project's venv")
    yield env
    shell(".venv/bin/elt warehouse stop", env)


def test_every_then_look_at_command_works_as_written_on_another_port(user_env, tmp_path):
    items = look_at_items()
    assert any("reports/elementary.html" in i for i in items)
    runnable = [c for i in items for c in commands(i)]
    assert len(runnable) >= 3, f"the README's list changed: {items}"

    init = shell(".venv/bin/elt source init --scale 0.002", user_env)
    assert init.returncode == 0, init.stderr[-3000:]
    run = shell(".venv/bin/elt run", user_env)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    assert f"127.0.0.1:{user_env['ELT_PG_PORT']}" in shell(
        ".venv/bin/elt warehouse url", user_env).stdout
    assert (Path(user_env["ELT_REPORTS_DIR"]) / "elementary.html").stat().st_size > 10_000

    dag = PROJECT_ROOT / "dag.png"
    had_dag = dag.exists()
    try:
        for command in runnable:
            result = shell(command, user_env)
            said = result.stdout + result.stderr
            assert result.returncode == 0, f"`{command}`:\n{said[-4000:]}"
            if "docs generate" in command:
                # it says what it does while it takes its time, and the file it names is there
                assert "Building catalog" in said
                assert (PROJECT_ROOT / "target" / "static_index.html").stat().st_size > 100_000
            elif "elt status" in command:
                assert "success" in said.lower()
            elif "elt dag" in command:
                assert "parsing the dbt project" in said
                assert dag.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        if not had_dag:
            dag.unlink(missing_ok=True)
