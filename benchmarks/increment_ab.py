"""A/B of the loader's one-day increment: this tree against an earlier commit, same source.

    python benchmarks/increment_ab.py --baseline d4af6d4 [--scale 1] [--days 6]

Both variants load the same source (built once at --scale) into their own warehouse: an
initial load each, then DAYS simulated days, each day loaded by both, in turns (A then B on odd
days, B then A on even ones) after a checkpoint, so drift of the machine falls on both alike.
The baseline's code comes from git (`git archive`, into $ELT_HOME/bench/ab/<commit>); each
load runs in a child process importing its variant's `loader` package, and times `run_load`
alone (not the interpreter's start). Prints every load, the medians and the ratio B/A.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.harness import recreate, settle  # noqa: E402
from loader import warehouse  # noqa: E402
from loader.config import load_settings  # noqa: E402
from loader.source import simulator  # noqa: E402

SOURCE = "bench_ab_src"
TARGET = 1.25  # issue 13: a one-day increment within 1.25x of the code before its checks

# Runs in the child, with the variant's tree first on sys.path: only names both trees have.
CHILD = """
import json, sys, time
from dataclasses import replace
from pathlib import Path
from loader.config import load_settings
from loader.extract.pipeline import run_load
from loader.extract.tables import load_config
base = load_settings()
s = replace(base, source=base.warehouse.with_database(sys.argv[1]),
            warehouse=base.warehouse.with_database(sys.argv[2]), home=Path(sys.argv[3]))
config = load_config(base.tables_config)
t0 = time.perf_counter()
result = run_load(s, config)
print(json.dumps({"seconds": time.perf_counter() - t0, "rows": result.rows_extracted}))
"""


def baseline_tree(base, commit: str) -> Path:
    """The baseline's files, from git, once per commit."""
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", commit],
                         check=True, capture_output=True, text=True).stdout.strip()
    tree = base.home / "bench" / "ab" / rev
    if not (tree / "loader").is_dir():
        shutil.rmtree(tree, ignore_errors=True)
        tree.mkdir(parents=True)
        with tempfile.TemporaryFile() as archive:
            subprocess.run(["git", "-C", str(ROOT), "archive", rev], stdout=archive, check=True)
            archive.seek(0)
            with tarfile.open(fileobj=archive) as tar:
                tar.extractall(tree, filter="data")
    return tree


def load(base, tree: Path, name: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    home = base.home / "bench" / "ab" / f"home_{name}"
    out = subprocess.run(
        [sys.executable, "-c", CHILD, SOURCE, f"bench_ab_{name}", str(home)],
        cwd=tree, env=env, check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", required=True, help="the commit to compare with (A)")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--days", type=int, default=6)
    args = parser.parse_args()
    base = load_settings()
    warehouse.ensure_running(base)
    variants = {"a": baseline_tree(base, args.baseline), "b": ROOT}
    print(f"A = {args.baseline} ({variants['a']}), B = this tree ({ROOT})", flush=True)
    recreate(SOURCE)
    simulator.init(base.warehouse.with_database(SOURCE),
                   simulator.SimConfig(scale=args.scale, seed=5))
    for name in variants:
        recreate(f"bench_ab_{name}")
        shutil.rmtree(base.home / "bench" / "ab" / f"home_{name}", ignore_errors=True)
        settle()
        first = load(base, variants[name], name)
        print(f"initial load {name.upper()}: {first['rows']:,} rows in {first['seconds']:.1f}s",
              flush=True)
    days: dict[str, list[dict]] = {"a": [], "b": []}
    for day in range(1, args.days + 1):
        simulator.advance(base.warehouse.with_database(SOURCE), 1)
        for name in ("a", "b") if day % 2 else ("b", "a"):
            settle()
            days[name].append(load(base, variants[name], name))
        print(f"day {day}: " + ", ".join(
            f"{n.upper()} {days[n][-1]['rows']:,} rows {days[n][-1]['seconds']:.2f}s"
            for n in ("a", "b")), flush=True)
    med = {n: statistics.median(d["seconds"] for d in days[n]) for n in days}
    ratio = med["b"] / med["a"]
    print(f"one-day increment, median of {args.days}: A {med['a']:.2f}s, B {med['b']:.2f}s; "
          f"B/A = {ratio:.2f}x (target <= {TARGET}x: {'met' if ratio <= TARGET else 'NOT met'})")
    out = {"baseline": args.baseline, "scale": args.scale, "days": days, "median": med,
           "ratio": ratio, "load_average": os.getloadavg()}
    (ROOT / "docs" / "increment_ab.json").write_text(json.dumps(out, indent=2))
    for name in ("src", "a", "b"):
        settle(drop=f"bench_ab_{name}")


if __name__ == "__main__":
    main()
