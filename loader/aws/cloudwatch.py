"""CloudWatch: the run's JSON log lines to CloudWatch Logs (batched, retried, never blocking
the run) and its metrics (rows per table, task durations, failures, reconciliation
differences, freshness lag) with put_metric_data."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from datetime import UTC, datetime
from typing import Any

from loader.aws import client
from loader.config import Settings
from loader.db import connect_raw

log = logging.getLogger(__name__)

# CloudWatch Logs takes up to 10,000 events or 1 MiB (with 26 bytes per event) per call
MAX_EVENTS, MAX_BYTES, EVENT_OVERHEAD = 10_000, 1_048_576, 26
FLUSH_S = 2.0  # a batch waits at most this long
QUEUE_SIZE = 50_000  # lines waiting: beyond, new lines are dropped (and counted), never waited on
ATTEMPTS = 4


class LogShipper:
    """Sends lines to one log stream from a background thread. `emit` never blocks and
    never raises; `close` flushes what is queued, waiting at most `timeout` seconds."""

    def __init__(self, group: str, stream: str, logs: Any = None) -> None:
        self.group, self.stream = group, stream
        self.logs = logs or client("logs", bounded=True)
        self.queue: queue.Queue[tuple[int, str] | None] = queue.Queue(QUEUE_SIZE)
        self.dropped = 0
        self.sent = 0
        self.failed = 0
        self.thread = threading.Thread(target=self._run, name="cloudwatch-logs", daemon=True)
        self.thread.start()

    def emit(self, line: str) -> None:
        try:
            self.queue.put_nowait((int(time.time() * 1000), line))
        except queue.Full:
            self.dropped += 1

    def close(self, timeout: float = 10.0) -> None:
        try:
            self.queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self.thread.join(timeout)

    def _run(self) -> None:
        try:
            self._ensure_stream()
        except Exception as exc:  # noqa: BLE001 - logging must not stop the run
            log.warning("CloudWatch Logs unavailable (%s): the run log stays local", exc)
            self._drain_forever()
            return
        batch: list[dict] = []
        size = 0
        deadline = time.monotonic() + FLUSH_S
        while True:
            try:
                item = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                item = ()  # the batch's time is up
            if item is None or item == () or len(batch) >= MAX_EVENTS or size >= MAX_BYTES:
                self._put(batch)
                batch, size, deadline = [], 0, time.monotonic() + FLUSH_S
            if item is None:
                return
            if item:
                stamp, line = item
                batch.append({"timestamp": stamp, "message": line})
                size += len(line.encode()) + EVENT_OVERHEAD

    def _drain_forever(self) -> None:
        while self.queue.get() is not None:
            self.dropped += 1

    def _ensure_stream(self) -> None:
        for call, kwargs in (
            (self.logs.create_log_group, {"logGroupName": self.group}),
            (self.logs.create_log_stream,
             {"logGroupName": self.group, "logStreamName": self.stream}),
        ):
            with contextlib.suppress(self.logs.exceptions.ResourceAlreadyExistsException):
                call(**kwargs)

    def _put(self, batch: list[dict]) -> None:
        if not batch:
            return
        for attempt in range(ATTEMPTS):
            try:
                self.logs.put_log_events(logGroupName=self.group, logStreamName=self.stream,
                                         logEvents=batch)
                self.sent += len(batch)
                return
            except Exception as exc:  # noqa: BLE001 - throttled, or the network: retry
                if attempt == ATTEMPTS - 1:
                    self.failed += len(batch)
                    log.warning("CloudWatch Logs refused %d line(s): %s", len(batch), exc)
                    return
                time.sleep(0.5 * 2**attempt)


def run_metrics(status: str, summary: dict, lags: dict[str, float]) -> list[dict]:
    """The metric data of one run: its summary (as ops.pipeline_runs keeps it) and the
    freshness lag of each raw table (seconds since its last load)."""
    now = datetime.now(UTC)
    data: list[dict] = []

    def metric(name: str, value: float, unit: str, **dims: str) -> None:
        data.append({"MetricName": name, "Value": float(value), "Unit": unit, "Timestamp": now,
                     "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()]})

    metric("RunDuration", summary.get("seconds", 0), "Seconds")
    metric("RunFailed", 1 if status != "success" else 0, "Count")
    for table, t in summary.get("tables", {}).items():
        metric("RowsLoaded", t.get("extracted") or 0, "Count", Table=table)
        if t.get("source_rows") is not None and t.get("raw_rows") is not None:
            difference = abs(t["source_rows"] - t["raw_rows"])
        else:
            difference = 0 if t.get("reconciled") is not False else 1
        metric("ReconciliationDifference", difference, "Count", Table=table)
    for task, t in summary.get("tasks", {}).items():
        if t.get("seconds") is not None:
            metric("TaskDuration", t["seconds"], "Seconds", Task=task)
        metric("TaskFailures", 1 if t.get("status") == "failed" else 0, "Count", Task=task)
    for table, lag in lags.items():
        metric("FreshnessLag", lag, "Seconds", Table=table)
    return data


def publish_metrics(namespace: str, data: list[dict], metrics: Any = None) -> int:
    """put_metric_data in calls of at most 1,000 data; returns how many were sent."""
    cw = metrics or client("cloudwatch", bounded=True)
    for start in range(0, len(data), 1000):
        cw.put_metric_data(Namespace=namespace, MetricData=data[start:start + 1000])
    return len(data)


def start_shipper(settings: Settings, run_id: str) -> LogShipper | None:
    """The run's log stream (named after the run) in ELT_CLOUDWATCH_LOG_GROUP; None (and a
    warning) when no client can be made: the run goes on with its local log."""
    try:
        return LogShipper(settings.aws.log_group, run_id)
    except Exception as exc:  # noqa: BLE001 - observability never stops the run
        log.warning("CloudWatch Logs unavailable: %s", exc)
        return None


def freshness_lags(settings: Settings) -> dict[str, float]:
    """Seconds since each raw table was last loaded (ops.load_reconciliation)."""
    conn = connect_raw(settings.warehouse)
    try:
        with conn.cursor() as cur:
            cur.execute("select to_regclass('ops.load_reconciliation') is not null")
            if not cur.fetchone()[0]:
                return {}
            cur.execute("select table_name, extract(epoch from now() - max(checked_at)) "
                        "from ops.load_reconciliation group by table_name")
            return {table: float(lag) for table, lag in cur.fetchall()}
    finally:
        conn.rollback()
        conn.close()


def finish_run(settings: Settings, status: str, summary: dict,
               shipper: LogShipper | None) -> None:
    """Flush the run's log lines and publish its metrics. Never raises: a failure to reach
    CloudWatch is a warning in the local log, not a failed run."""
    try:
        if shipper is not None:
            shipper.close(timeout=15)
        data = run_metrics(status, summary, freshness_lags(settings))
        publish_metrics(settings.aws.metrics_namespace, data)
    except Exception as exc:  # noqa: BLE001
        log.warning("CloudWatch metrics not published: %s", exc)
