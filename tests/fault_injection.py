"""Fault injection: kills at random points of `elt load` and `elt run`, kills of the
PostgreSQL server mid-run, and bad input; after each fault the next `elt run` must succeed
with raw equal to the source, no lock held and no process left behind.

    python -m tests.fault_injection [--kills 30] [--server-kills 4] [--scale 0.02] [--seed 1]

It starts its own embedded server in a temporary ELT_HOME (stopped at the end), builds a
source whose history ends --kills + --server-kills + 5 days ago (one simulated day per
fault), and prints one line per fault and a summary; `--json PATH` writes the figures.
`make test` runs a short form (tests/integration/test_fault_injection.py); the full run is
by hand, and its last figures are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil

from loader import warehouse
from loader.config import PROJECT_ROOT, load_settings
from loader.extract.tables import load_config
from loader.source import simulator

BAD_INPUTS = {
    # name: (environment changes, tables.yml text replacement, expected words)
    "unknown table": ({}, ("  orders:\n", "  nope:\n    primary_key: id\n    mode: full\n"
                                          "  orders:\n"), "does not exist"),
    "key not in source": ({}, ("primary_key: order_id", "primary_key: order_uuid"),
                          "order_uuid not in source"),
    "cursor not in source": ({}, ("    cursor: updated_at\n  order_items",
                                  "    cursor: changed_on\n  order_items"), "changed_on not in"),
    "bad host": ({"ELT_SOURCE_URL": "postgresql://postgres@no-such-host.invalid:5432/x"}, None,
                 "cannot connect"),
    "wrong database": ({"ELT_SOURCE_URL": "postgresql://postgres@127.0.0.1:{port}/nope_db"},
                       None, "does not exist"),
    "wrong user": ({"ELT_SOURCE_URL": "postgresql://nobody_here@127.0.0.1:{port}/source"}, None,
                   "does not exist"),
    "negative scale": ({}, None, "must be above 0"),
}


@dataclass
class Outcome:
    fault: str
    at_s: float
    exit: int | None
    recovered: bool
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        verdict = "ok" if self.recovered and not self.problems else "FAILED"
        return (f"{self.fault:<28} killed at {self.at_s:5.1f}s (exit {self.exit}); "
                f"next run: {verdict}" + (f" — {'; '.join(self.problems)}" if self.problems
                                          else ""))


def elt(env: dict[str, str], *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loader.cli", *args], cwd=PROJECT_ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=timeout)


def raw_equals_source(settings) -> list[str]:
    from benchmarks.no_silent_loss import raw_equals_source as compare

    return compare(settings, load_config(settings.tables_config))


def kill_during(env: dict[str, str], args: list[str], at: float, whole_group: bool
                ) -> tuple[int | None, list[str]]:
    """Start `elt ARGS`, SIGKILL it `at` seconds later (only the elt process, or its whole
    process group); returns its exit code and the children that outlived it by 5 s."""
    proc = subprocess.Popen([sys.executable, "-m", "loader.cli", *args], cwd=PROJECT_ROOT,
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + at
    children: list[psutil.Process] = []
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            children = psutil.Process(proc.pid).children(recursive=True) or children
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    if proc.poll() is None:
        if whole_group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    code = proc.wait()
    _, alive = psutil.wait_procs(children, timeout=5)
    return (None if code == -9 else code), [" ".join(p.cmdline()[:3]) for p in alive]


def check_recovery(env: dict[str, str], settings) -> list[str]:
    """The next `elt run` succeeds, raw equals the source, nobody holds the lock."""
    done = elt(env, "run")
    problems = [] if done.returncode == 0 else [f"next run exit {done.returncode}: "
                                                f"{done.stderr.strip()[-300:]}"]
    problems += raw_equals_source(settings)
    return problems


def run_faults(kills: int, server_kills: int, scale: float, seed: int,
               echo=print) -> dict:
    rng = random.Random(seed)
    home = Path(tempfile.mkdtemp(prefix="elt-faults-"))
    from tests.conftest import TEST_DEFAULTS, free_port

    env = {"ELT_HOME": str(home), "ELT_PG_PORT": str(free_port()), **TEST_DEFAULTS,
           "ELT_DEEP_RECONCILE_EVERY": "0"}
    settings = load_settings(env)
    outcomes: list[Outcome] = []
    t0 = time.monotonic()
    warehouse.start(settings)
    try:
        days = kills + server_kills + 5
        end = (datetime.now(UTC) - timedelta(days=days)).date()
        simulator.init(settings.source, simulator.SimConfig(scale=scale, seed=seed, end_date=end))
        first = elt(env, "run")
        if first.returncode != 0:
            raise SystemExit(f"the first run failed: {first.stderr[-2000:]}")
        typical = {"load": 2.0, "run": 30.0}
        for n in range(kills):
            simulator.advance(settings.source, 1)
            kind = "load" if n % 2 == 0 else "run"
            whole = n % 4 == 3  # now and then the whole process group, as Ctrl-C + kill does
            at = rng.uniform(0.3, typical[kind])
            code, alive = kill_during(env, [kind], at, whole)
            problems = [f"outlived elt: {a}" for a in alive]
            problems += check_recovery(env, settings)
            outcomes.append(Outcome(f"SIGKILL elt {kind}" + (" (group)" if whole else ""),
                                    at, code, not problems, problems))
            echo(outcomes[-1].line())
        for _ in range(server_kills):
            simulator.advance(settings.source, 1)
            at = rng.uniform(1.0, typical["run"])
            proc = subprocess.Popen([sys.executable, "-m", "loader.cli", "run"],
                                    cwd=PROJECT_ROOT, env={**os.environ, **env},
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(at)
            pid = warehouse._postmaster_pid(settings.pgdata)
            if pid:
                os.kill(pid, signal.SIGKILL)
            code = proc.wait(timeout=600)
            problems = [] if code in (0, 1, 3) else [f"elt run exited {code}, not 3"]
            warehouse.start(settings)
            problems += check_recovery(env, settings)
            outcomes.append(Outcome("SIGKILL postgres mid-run", at, code, not problems, problems))
            echo(outcomes[-1].line())
        bad = bad_inputs(env, settings)
        for line in bad:
            echo(line)
    finally:
        warehouse.stop(settings)
        shutil.rmtree(home, ignore_errors=True)
    failed = [o for o in outcomes if o.problems] + [b for b in bad if not b.endswith(": ok")]
    summary = {
        "scale": scale, "seed": seed, "kills": kills, "server_kills": server_kills,
        "faults": len(outcomes), "recovered": sum(o.recovered for o in outcomes),
        "bad_inputs": len(bad), "bad_inputs_ok": sum(b.endswith(": ok") for b in bad),
        "failures": [o.line() for o in outcomes if o.problems]
        + [b for b in bad if not b.endswith(": ok")],
        "seconds": round(time.monotonic() - t0),
    }
    echo(f"{summary['recovered']}/{summary['faults']} faults recovered, "
         f"{summary['bad_inputs_ok']}/{summary['bad_inputs']} bad inputs refused in one line "
         f"with exit 2, in {summary['seconds']}s" + (" — FAILURES" if failed else ""))
    return summary


def bad_inputs(env: dict[str, str], settings) -> list[str]:
    """Each bad input: exit 2, one line naming the cause, no traceback, nothing loaded."""
    lines = []
    config_text = settings.tables_config.read_text()
    port = env["ELT_PG_PORT"]
    for name, (changes, replace, expected) in BAD_INPUTS.items():
        case_env = {**env, **{k: v.format(port=port) for k, v in changes.items()}}
        path = None
        if replace:
            path = Path(env["ELT_HOME"]) / "bad-tables.yml"
            path.write_text(config_text.replace(*replace, 1))
            case_env["ELT_TABLES_CONFIG"] = str(path)
        args = ["run", "--scale", "-1"] if name == "negative scale" else ["load"]
        done = elt(case_env, *args, timeout=300)
        errors = [x for x in done.stderr.splitlines() if not x.startswith("  · ")]
        ok = (done.returncode == 2 and "Traceback" not in done.stderr and len(errors) == 1
              and expected in errors[0])
        lines.append(f"bad input {name!r}: "
                     + ("ok" if ok else f"exit {done.returncode}: {done.stderr[-300:]}"))
    return lines


def consecutive_runs(runs: int, scale: float, seed: int, echo=print) -> dict:
    """`elt run --simulate-days 1`, `runs` times in a row, dbt build and freshness side by
    side each time: how many runs failed, and how many dbt logs mention a catalog race
    ('tuple concurrently updated')."""
    home = Path(tempfile.mkdtemp(prefix="elt-runs-"))
    from tests.conftest import TEST_DEFAULTS, free_port

    env = {"ELT_HOME": str(home), "ELT_PG_PORT": str(free_port()), **TEST_DEFAULTS,
           "DBT_TARGET_PATH": str(home / "target"), "DBT_LOG_PATH": str(home / "dbt-logs")}
    settings = load_settings(env)
    warehouse.start(settings)
    failed, races, t0 = [], 0, time.monotonic()
    try:
        end = (datetime.now(UTC) - timedelta(days=runs + 2)).date()
        simulator.init(settings.source, simulator.SimConfig(scale=scale, seed=seed, end_date=end))
        for n in range(runs):
            done = elt(env, "run", "--simulate-days", "1" if n else "0")
            logs = "".join(p.read_text(errors="replace") for p in home.rglob("dbt.log"))
            races = logs.count("tuple concurrently updated")
            if done.returncode != 0:
                failed.append(f"run {n + 1}: exit {done.returncode}: {done.stderr[-300:]}")
            summary = json.loads(elt(env, "status", "--json").stdout)["runs"]["last"][0]
            echo(f"run {n + 1}/{runs}: exit {done.returncode}, {summary['status']}, "
                 f"{summary['duration_s']:.0f}s; races in dbt logs so far: {races}")
    finally:
        warehouse.stop(settings)
        shutil.rmtree(home, ignore_errors=True)
    return {"runs": runs, "failed": failed, "races": races,
            "seconds": round(time.monotonic() - t0)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--server-kills", type=int, default=4)
    parser.add_argument("--scale", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--consecutive-runs", type=int, default=0, metavar="N",
                        help="instead: N elt runs in a row, counting failures and races")
    args = parser.parse_args()
    if args.consecutive_runs:
        summary = consecutive_runs(args.consecutive_runs, args.scale, args.seed)
        print(json.dumps(summary))
        if args.json:
            args.json.write_text(json.dumps(summary, indent=2) + "\n")
        return 0 if not summary["failed"] and not summary["races"] else 1
    summary = run_faults(args.kills, args.server_kills, args.scale, args.seed)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if not summary["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
