"""Issue 18, "cost grows with the work": the loader's initial load and a one-day increment at
several scales, with the peak RSS of each, and their ratios to scale 1 beside the targets.

    python benchmarks/scaling.py [--scales 1 2 5] [--days 2]

Each scale's source is built once by the simulator (seed 1) and kept as `bench_scale_<s>`
(scale 5 is about 33M rows and takes minutes to build: it is not rebuilt while it exists).
For each scale, in this order and each in its own process (harness.run_case):
1. the source is copied (CREATE DATABASE ... TEMPLATE) and loaded into an empty warehouse:
   the initial load, timed;
2. one simulated day is written into the copy (not timed) and loaded: the one-day increment,
   timed; --days times, the median counts.
Peak RSS is the process's own and its children's (psql exports the bulk tables): getrusage.
The database server's processes are not counted (they are the same server at every scale).
Writes benchmarks/results/scaling.json; run_all.py puts it in docs/benchmarks.md and plots
time and memory against scale in docs/benchmarks.png.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import harness  # noqa: E402
from loader.db import connect_raw  # noqa: E402
from loader.source import simulator  # noqa: E402

SRC, WH = "bench_scaling_src", "bench_scaling_wh"
# the targets of issue 18, as ratios to scale 1
TARGETS = {"initial": 5.5, "increment": 1.5, "peak_mb": 1.2}
TARGET_SCALE = 5.0


def cached_source(scale: float) -> str:
    """`bench_scale_<scale>`, built once by the simulator and vacuumed; returns its name."""
    name = f"bench_scale_{scale:g}".replace(".", "_")
    if harness.database_exists(name) and simulator.is_initialised(harness.endpoint(name)):
        return name
    print(f"  building the scale-{scale:g} source {name} (once; cached)", flush=True)
    t0 = time.perf_counter()
    src = harness.recreate(name)
    simulator.init(src, simulator.SimConfig(scale=scale, seed=1))
    conn = connect_raw(src, autocommit=True)
    with conn.cursor() as cur:
        cur.execute("vacuum analyze")
    conn.close()
    print(f"  built in {time.perf_counter() - t0:.0f}s", flush=True)
    return name


def _settings():
    return harness.bench_settings("scaling", SRC, WH)


def initial_load(label: str = "") -> dict:
    from loader.extract.pipeline import run_load
    from loader.extract.tables import load_config

    s = _settings()
    t0 = time.perf_counter()
    result = run_load(s, load_config(s.tables_config))
    return {"label": label, "seconds": time.perf_counter() - t0, "rows": result.rows_extracted}


def one_day(label: str = "") -> dict:
    from loader.extract.pipeline import run_load
    from loader.extract.tables import load_config

    s = _settings()
    simulator.advance(s.source, 1)  # set-up: not timed
    harness.admin_exec("checkpoint")
    t0 = time.perf_counter()
    result = run_load(s, load_config(s.tables_config))
    return {"label": label, "seconds": time.perf_counter() - t0, "rows": result.rows_extracted}


def measure(scale: float, days: int) -> dict:
    source = cached_source(scale)
    rows = sum(simulator.counts(harness.endpoint(source)).values())
    harness.recreate(SRC, template=source)
    harness.recreate(WH)
    shutil.rmtree(harness.settings().home / "bench" / "scaling", ignore_errors=True)
    print(f"\nscale {scale:g}: {rows:,} source rows", flush=True)
    case = "benchmarks.scaling:"
    initial = harness.run_case(case + "initial_load", {"label": f"initial load, scale {scale:g}"})
    increments = [
        harness.run_case(case + "one_day", {"label": f"one-day increment {n}, scale {scale:g}"})
        for n in range(1, days + 1)
    ]
    harness.settle(WH)
    harness.settle(SRC)
    return {
        "scale": scale,
        "source_rows": rows,
        "initial": initial,
        "increments": increments,
        "increment_seconds": statistics.median(r["seconds"] for r in increments),
        "increment_rows": round(statistics.median(r["rows"] for r in increments)),
        "increment_peak_mb": max(r["peak_mb"] for r in increments),
    }


def ratios(points: list[dict]) -> list[dict]:
    """Each scale against scale 1: time of the initial load and of the increment, peak RSS."""
    base = next(p for p in points if p["scale"] == 1.0)
    out = []
    for p in points:
        out.append({
            "scale": p["scale"],
            "initial": p["initial"]["seconds"] / base["initial"]["seconds"],
            "increment": p["increment_seconds"] / base["increment_seconds"],
            "initial_peak_mb": p["initial"]["peak_mb"] / base["initial"]["peak_mb"],
            "increment_peak_mb": p["increment_peak_mb"] / base["increment_peak_mb"],
        })
    return out


def report(points: list[dict]) -> list[str]:
    lines = [f"{'scale':>5} {'source rows':>12} {'initial':>9} {'x1':>6} {'one day':>8} "
             f"{'x1':>6} {'peak MB init/day':>17} {'x1':>11}"]
    for p, r in zip(points, ratios(points), strict=True):
        lines.append(
            f"{p['scale']:>5g} {p['source_rows']:>12,} {p['initial']['seconds']:>8.1f}s "
            f"{r['initial']:>5.2f}x {p['increment_seconds']:>7.2f}s {r['increment']:>5.2f}x "
            f"{p['initial']['peak_mb']:>8.0f}/{p['increment_peak_mb']:<8.0f} "
            f"{r['initial_peak_mb']:>5.2f}/{r['increment_peak_mb']:<5.2f}"
        )
    top = next((r for r in ratios(points) if r["scale"] == TARGET_SCALE), None)
    if top:
        peak = max(top["initial_peak_mb"], top["increment_peak_mb"])
        for name, value, target in (
            ("initial load", top["initial"], TARGETS["initial"]),
            ("one-day increment", top["increment"], TARGETS["increment"]),
            ("peak RSS", peak, TARGETS["peak_mb"]),
        ):
            verdict = "met" if value <= target else "NOT met"
            lines.append(f"scale {TARGET_SCALE:g} / scale 1, {name}: {value:.2f}x "
                         f"(target <= {target}x): {verdict}")
    return lines


def plot(points: list[dict], time_ax, memory_ax) -> None:
    """Time and peak RSS against scale, on two matplotlib axes (run_all's figure)."""
    scales = [p["scale"] for p in points]
    base = points[0]
    time_ax.plot(scales, [p["initial"]["seconds"] for p in points], "o-", label="initial load")
    time_ax.plot(scales, [p["increment_seconds"] for p in points], "s-",
                 label="one-day increment")
    time_ax.plot(scales, [base["initial"]["seconds"] * s / base["scale"] for s in scales], ":",
                 color="grey", label="initial load, linear from scale 1")
    time_ax.set(xlabel="scale", ylabel="seconds (log)", yscale="log",
                title="loader time against scale (scaling.py)")
    time_ax.legend(loc="upper left", fontsize="small")
    memory_ax.plot(scales, [p["initial"]["peak_mb"] for p in points], "o-", label="initial load")
    memory_ax.plot(scales, [p["increment_peak_mb"] for p in points], "s-",
                   label="one-day increment")
    memory_ax.set(xlabel="scale", ylabel="peak RSS (MB)",
                  title="loader memory against scale (scaling.py)")
    memory_ax.set_ylim(bottom=0)
    memory_ax.legend()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 2.0, 5.0])
    parser.add_argument("--days", type=int, default=2, help="one-day increments per scale")
    args = parser.parse_args()
    if 1.0 not in args.scales:
        raise SystemExit("the ratios are to scale 1: include it in --scales")
    points = []
    for scale in sorted(args.scales):  # saved after each scale: a cut run keeps what it has
        points.append(measure(scale, args.days))
        lines = report(points)
        harness.save("scaling", {"machine": harness.machine(), "days": args.days,
                                 "points": points, "ratios": ratios(points), "report": lines})
    print("\n" + "\n".join(lines))
    print("`python benchmarks/run_all.py --report-only` writes them into docs/benchmarks.md "
          "and the plot")


if __name__ == "__main__":
    main()
