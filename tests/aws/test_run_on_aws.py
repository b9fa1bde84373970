"""One `elt run` wired to every AWS feature at once (warehouse credentials from Secrets
Manager, landing zone in S3, logs and metrics in CloudWatch), then what each left behind."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest

from loader.aws.cloudwatch import LogShipper
from loader.config import load_settings
from tests.aws.conftest import rds_secret, set_password
from tests.conftest import create_database, create_warehouse, query

pytestmark = pytest.mark.slow
PASSWORD = "Leak-Canary-7f3a9"
SOURCE_PASSWORD = "Source-Canary-42b1"  # the server trusts postgres: any password works
GROUP = "/elt/test-runs"
NAMESPACE = "elt-test"
BUCKET = "elt-run-landing"


@pytest.fixture(scope="module")
def aws_run(settings, password_role, aws, tmp_path_factory):
    import boto3

    from loader.orchestrate import job

    session = boto3.session.Session()
    session.client("s3").create_bucket(Bucket=BUCKET)
    create_warehouse(settings, "aws_run_wh")
    create_database(settings, "aws_run_src")
    set_password(settings, PASSWORD)
    sm = session.client("secretsmanager")
    secret_id = sm.create_secret(
        Name="elt/warehouse-run", SecretString=rds_secret(settings, "aws_run_wh", PASSWORD)
    )["ARN"]
    source_secret = json.loads(rds_secret(settings, "aws_run_src", SOURCE_PASSWORD))
    source_id = sm.create_secret(
        Name="elt/source-run", SecretString=json.dumps({**source_secret, "username": "postgres"})
    )["ARN"]
    work = tmp_path_factory.mktemp("aws-run")
    dirs = {d: work / d for d in ("home", "target", "logs", "reports")}
    patch = pytest.MonkeyPatch()
    patch.setenv("DBT_TARGET_PATH", str(dirs["target"]))
    patch.setenv("DBT_LOG_PATH", str(dirs["logs"]))
    s = load_settings({
        "ELT_HOME": str(dirs["home"]),
        "ELT_PG_PORT": str(settings.port),
        "ELT_SOURCE_SECRET_ID": source_id,  # where the source is, too
        "ELT_WAREHOUSE_SECRET_ID": secret_id,
        "ELT_REPORTS_DIR": str(dirs["reports"]),
        "ELT_DBT_THREADS": "2",
        "ELT_S3_URL": f"s3://{BUCKET}/landing",
        "ELT_CLOUDWATCH_LOG_GROUP": GROUP,
        "ELT_CLOUDWATCH_NAMESPACE": NAMESPACE,
    })
    printed: list[str] = []
    code = job.run_job(s, job.RunOptions(scale=0.002, base_delay=0.01), echo=printed.append)
    patch.undo()
    assert code == 0, "\n".join(printed)
    run_id, summary = query(s.warehouse, "select run_id, summary from ops.pipeline_runs")[0]
    yield s, dirs, printed, run_id, summary


def test_the_secret_password_is_written_nowhere(aws_run):
    s, dirs, printed, _, summary = aws_run
    assert summary["tables"]["orders"]["reconciled"] is True  # loaded from the secret's source
    # the secret alone names that database, and its role signs in by password only
    assert query(s.warehouse, "select current_database(), session_user") == [
        ("aws_run_wh", "elt_secret")
    ]
    assert (dirs["target"] / "run_results.json").exists() and any(dirs["reports"].iterdir())
    for password in (PASSWORD, SOURCE_PASSWORD):
        found = subprocess.run(["grep", "-rlaF", password, *map(str, dirs.values())],
                               capture_output=True, text=True)
        assert found.returncode == 1, f"a password was written to {found.stdout}"
        assert not any(password in line for line in printed)


def test_the_run_log_is_in_cloudwatch_logs(aws_run, boto):
    s, _, _, run_id, _ = aws_run
    events = boto("logs").get_log_events(logGroupName=GROUP, logStreamName=run_id,
                                         startFromHead=True)["events"]
    lines = [json.loads(e["message"]) for e in events]
    local = [json.loads(line) for line in (s.logs_dir / "elt-runs.jsonl").read_text().splitlines()]
    assert lines == [r for r in local if r["run_id"] == run_id]
    assert lines[0]["message"] == "run started" and lines[-1]["message"] == "run finished"
    assert {r["task"] for r in lines} >= {"load_wave_1", "dbt_build"}


def test_the_run_metrics_are_in_cloudwatch(aws_run, boto):
    _, _, _, _, summary = aws_run
    cw = boto("cloudwatch")
    names = {(m["MetricName"], tuple((d["Name"], d["Value"]) for d in m["Dimensions"]))
             for m in cw.list_metrics(Namespace=NAMESPACE)["Metrics"]}
    assert ("RowsLoaded", (("Table", "orders"),)) in names
    assert ("TaskDuration", (("Task", "dbt_build"),)) in names
    assert ("TaskFailures", (("Task", "dbt_build"),)) in names
    assert ("ReconciliationDifference", (("Table", "bids"),)) in names
    assert ("FreshnessLag", (("Table", "customers"),)) in names
    now = datetime.now(UTC)

    def total(metric: str, **dims: str) -> float:
        points = cw.get_metric_statistics(
            Namespace=NAMESPACE, MetricName=metric, Statistics=["Sum"], Period=3600,
            StartTime=now - timedelta(hours=1), EndTime=now + timedelta(minutes=5),
            Dimensions=[{"Name": k, "Value": v} for k, v in dims.items()],
        )["Datapoints"]
        return sum(p["Sum"] for p in points)

    assert total("RowsLoaded", Table="orders") == summary["tables"]["orders"]["extracted"] > 0
    assert total("ReconciliationDifference", Table="orders") == 0
    assert total("RunFailed") == 0


def test_the_run_landed_every_table_in_s3(aws_run, boto):
    _, _, _, _, summary = aws_run
    keys = [o["Key"] for o in
            boto("s3").list_objects_v2(Bucket=BUCKET, Prefix="landing/")["Contents"]]
    for table in summary["tables"]:
        assert any(k.startswith(f"landing/table={table}/load_id=") for k in keys), table


class BrokenLogs:
    """A CloudWatch Logs client whose every call hangs a while, then fails."""

    class exceptions:  # noqa: N801 - boto3's shape
        ResourceAlreadyExistsException = KeyError

    def create_log_group(self, **_):
        return None

    create_log_stream = create_log_group

    def put_log_events(self, **_):
        time.sleep(0.2)
        raise ConnectionError("endpoint unreachable")


def test_cloudwatch_logs_never_block_the_run(monkeypatch):
    monkeypatch.setattr("loader.aws.cloudwatch.FLUSH_S", 0.05)
    shipper = LogShipper("g", "s", logs=BrokenLogs())
    t0 = time.monotonic()
    for n in range(1000):
        shipper.emit(f'{{"n": {n}}}')
    assert time.monotonic() - t0 < 0.5  # emit only queues
    t0 = time.monotonic()
    shipper.close(timeout=1.0)
    assert time.monotonic() - t0 < 1.5  # close waits at most its timeout


def test_an_unreachable_cloudwatch_delays_the_end_of_a_run_by_seconds_only(aws, monkeypatch):
    """Nothing listens on port 9: every call is refused. finish_run warns and returns."""
    import dataclasses

    from loader.aws import cloudwatch
    from loader.config import AwsSettings, load_settings

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setattr(cloudwatch, "freshness_lags", lambda settings: {"orders": 1.0})
    s = dataclasses.replace(load_settings({}), aws=AwsSettings(log_group="g"))
    t0 = time.monotonic()
    shipper = cloudwatch.start_shipper(s, "run-1")
    shipper.emit('{"message": "run started"}')
    summary = {"seconds": 1.0, "tables": {"orders": {"extracted": 5, "reconciled": True}},
               "tasks": {"load_wave_1": {"status": "success", "seconds": 1.0}}}
    cloudwatch.finish_run(s, "success", summary, shipper)
    assert time.monotonic() - t0 < 30


def test_a_mart_exports_to_s3_from_where_this_environment_built_it(aws_run, boto):
    import io

    import pyarrow.parquet as pq

    from loader.aws.export import export_tables
    from loader.config import dbt_relation

    s, _, _, _, _ = aws_run
    done = export_tables(s, ["fct_orders"], f"s3://{BUCKET}/exports")
    assert done[0].url == f"s3://{BUCKET}/exports/marts/fct_orders.parquet"
    body = boto("s3").get_object(Bucket=BUCKET, Key="exports/marts/fct_orders.parquet")
    exported = pq.read_table(io.BytesIO(body["Body"].read()))
    built = dbt_relation(s.env, "marts.fct_orders")
    assert exported.num_rows == query(s.warehouse, f"select count(*) from {built}")[0][0] > 0
