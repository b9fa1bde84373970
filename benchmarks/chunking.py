"""Item 2: chunk size vs throughput and peak RSS, and memory as the table grows (1x, 4x, 16x).

    python benchmarks/chunking.py [--scale 1]

Part A loads one large synthetic table (4x rows) through Python in chunks: a server-side
cursor fetches `chunk` rows, which go to the target with one COPY each; `all` is fetchall and
one COPY, the unchunked baseline. Next to it, the streaming COPY pipe with the buffer sizes
psycopg2 reads and writes in (the loader uses 1 MiB).
Part B loads 1x, 4x and 16x rows three ways: this project's loader (`run_load`, COPY streamed
to a file and in, no Python rows), the chunked path at 10k rows, and unchunked fetchall.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import harness  # noqa: E402
from loader.db import connect_raw  # noqa: E402

TARGET = "bench_chunk"
CHUNKS = [1_000, 10_000, 100_000, "all"]
BUFFERS = [8 << 10, 64 << 10, 1 << 20]


def _target():
    conn = connect_raw(harness.recreate(TARGET))
    with conn.cursor() as cur:
        cur.execute(f"create table t ({harness.ITEMS_DDL})")
    conn.commit()
    return conn


def chunked(source: str, chunk: int | str, label: str = "") -> dict:
    """Server-side cursor, `chunk` rows at a time, one COPY per chunk (all: fetchall)."""
    dst = _target()
    src = connect_raw(harness.endpoint(harness.DATA_DB))
    t0 = time.perf_counter()
    if chunk == "all":
        with src.cursor() as cur:
            cur.execute(f"select * from {source}")
            batches = [cur.fetchall()]
    else:
        cur = src.cursor(name="bench_chunk")
        cur.itersize = chunk
        cur.execute(f"select * from {source}")
        batches = iter(lambda: cur.fetchmany(chunk), [])
    rows = 0
    with dst.cursor() as out:
        for batch in batches:
            buf = io.StringIO()
            csv.writer(buf).writerows(batch)
            buf.seek(0)
            out.copy_expert("copy t from stdin with (format csv)", buf)
            rows += len(batch)
    dst.commit()
    seconds = time.perf_counter() - t0
    src.close()
    dst.close()
    return {"label": label, "chunk": chunk, "rows": rows, "seconds": seconds}


def streamed(source: str, buffer: int, label: str = "") -> dict:
    """COPY TO STDOUT piped into COPY FROM STDIN (binary), psycopg2 moving `buffer` bytes."""
    dst = _target()
    src = connect_raw(harness.endpoint(harness.DATA_DB))
    t0 = time.perf_counter()
    r, w = os.pipe()

    def produce() -> None:
        with os.fdopen(w, "wb") as out, src.cursor() as cur:
            cur.copy_expert(f"copy {source} to stdout (format binary)", out, size=buffer)

    producer = threading.Thread(target=produce)
    producer.start()
    with os.fdopen(r, "rb") as inp, dst.cursor() as cur:
        cur.copy_expert("copy t from stdin (format binary)", inp, size=buffer)
        rows = cur.rowcount
    producer.join()
    dst.commit()
    seconds = time.perf_counter() - t0
    src.close()
    dst.close()
    return {"label": label, "buffer": buffer, "rows": rows, "seconds": seconds}


def this_loader(source: str, label: str = "") -> dict:
    """The project's loader, initial load of the synthetic table (listed in a config here)."""
    import shutil

    from loader.extract.pipeline import run_load
    from loader.extract.tables import LoaderConfig, TableSpec

    harness.recreate(TARGET)
    settings = harness.bench_settings("chunk", harness.DATA_DB, TARGET)
    shutil.rmtree(settings.home, ignore_errors=True)
    spec = TableSpec(source, ("id",), "timestamp", cursor="ordered_at")
    config = LoaderConfig("public", "raw", None, {source: spec})
    t0 = time.perf_counter()
    result = run_load(settings, config)
    seconds = time.perf_counter() - t0
    shutil.rmtree(settings.home, ignore_errors=True)
    return {"label": label, "rows": result.rows_extracted, "seconds": seconds}


def run(scale: float) -> dict:
    base = harness.scaled(100_000, scale, floor=5_000)
    sizes = {f: harness.ensure_items(base * f) for f in (1, 4, 16)}
    case = "benchmarks.chunking:"
    print(f"\n[2a] chunk size, loading {base * 4:,} rows through Python (one COPY per chunk)")
    sweep = []
    for chunk in CHUNKS:
        label = f"chunks of {chunk:,} rows" if chunk != "all" else "unchunked (fetchall)"
        sweep.append(harness.run_case(case + "chunked",
                                      {"source": sizes[4], "chunk": chunk, "label": label},
                                      drop=TARGET))
    for buffer in BUFFERS:
        sweep.append(harness.run_case(
            case + "streamed",
            {"source": sizes[4], "buffer": buffer, "label": f"COPY stream, {buffer >> 10} KiB"},
            drop=TARGET))
    print(f"\n[2b] memory as rows grow: {base:,} / {base * 4:,} / {base * 16:,} rows")
    growth = []
    for factor, source in sizes.items():
        for fn, label, kwargs in (
            ("this_loader", "this loader", {}),
            ("chunked", "chunks of 10,000", {"chunk": 10_000}),
            ("chunked", "unchunked (fetchall)", {"chunk": "all"}),
        ):
            r = harness.run_case(case + fn, {"source": source, "label": f"{label}, {factor}x",
                                             **kwargs}, drop=TARGET)
            r.update(method=label, factor=factor)
            growth.append(r)
    out = {"base_rows": base, "sweep": sweep, "growth": growth}
    harness.save("chunking", out)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0)
    run(parser.parse_args().scale)
