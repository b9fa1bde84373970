"""The Lambda package: built here, unpacked in a fresh directory, its handler invoked with a
Lambda-like event and context against the embedded PostgreSQL and the local AWS endpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import pytest

from loader.aws.package import LAMBDA_UNZIPPED_LIMIT, build_lambda_zip
from tests.conftest import query
from tests.integration.test_loader import fresh

INVOKE = """
import json, sys, time
class Context:  # what Lambda passes: the time left of the invocation
    def __init__(self, ms): self.deadline = time.monotonic() + ms / 1000
    def get_remaining_time_in_millis(self): return int((self.deadline - time.monotonic()) * 1000)
from loader.aws.lambda_handler import handler
import loader
event, ms = json.loads(sys.argv[1]), int(sys.argv[2])
result = handler(event, Context(ms))
result["imported_from"] = loader.__file__
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory):
    work = tmp_path_factory.mktemp("lambda")
    package = build_lambda_zip(work / "dist" / "elt-lambda.zip")
    # measured: the dependencies (pyarrow, numpy, pandas...) are over Lambda's limit, so
    # the zip holds the code and the container image (deploy/lambda/Dockerfile) ships it
    assert package.unzipped_bytes > LAMBDA_UNZIPPED_LIMIT and not package.with_dependencies
    assert package.zipped_bytes < 5 * 2**20
    task = work / "task"  # what Lambda unpacks to /var/task
    with zipfile.ZipFile(package.output) as zf:
        zf.extractall(task)
    assert (task / "loader" / "aws" / "lambda_handler.py").exists()
    assert (task / "dbt_project.yml").exists() and (task / "models").is_dir()
    return task


def invoke(task, env: dict[str, str], event: dict, remaining_ms: int) -> dict:
    # a fresh interpreter whose only code path is the unpacked task (dependencies come from
    # this environment, as from a layer or the image)
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("ELT_")}
    child_env.update(env, PYTHONPATH=str(task))
    done = subprocess.run([sys.executable, "-c", INVOKE, json.dumps(event), str(remaining_ms)],
                          cwd=task, env=child_env, capture_output=True, text=True, timeout=960)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_handler_runs_a_load_from_the_unpacked_zip(unpacked, settings, elt_env, aws,
                                                      tmp_path):
    import boto3

    boto3.session.Session().client("s3").create_bucket(Bucket="elt-lambda-landing")
    s, env = fresh(settings, elt_env, tmp_path, "lambda", scale=0.002,
                   ELT_S3_URL="s3://elt-lambda-landing/landing")
    result = invoke(unpacked, env, {"command": "load", "tables": ["customers", "products"]},
                    remaining_ms=240_000)
    assert result["status"] == "success", result
    assert result["imported_from"].startswith(str(unpacked))
    assert result["code"] == str(unpacked)
    assert any(line.startswith("  customers") for line in result["output"])
    for table in ("customers", "products"):
        assert query(s.warehouse, f"select count(*) from raw_marketplace.{table}")[0][0] > 0
    keys = boto3.session.Session().client("s3").list_objects_v2(
        Bucket="elt-lambda-landing", Prefix="landing/table=customers/")["KeyCount"]
    assert keys == 1


def test_the_handler_stops_within_the_remaining_time(unpacked, settings, elt_env, tmp_path):
    import psycopg2

    s, env = fresh(settings, elt_env, tmp_path, "lambda_late", scale=0.002)
    result = invoke(unpacked, env, {"command": "load"}, remaining_ms=2_000)
    assert result["status"] == "skipped"  # less than the margin: nothing started
    # a load that cannot finish in its 1.5 s: a source table locked by another session (a
    # small initial load alone may end in time on a quiet machine)
    blocker = psycopg2.connect(s.source.dsn)
    try:
        with blocker.cursor() as cur:
            cur.execute("lock table marketplace.orders in access exclusive mode")
        result = invoke(unpacked, env, {"command": "load"}, remaining_ms=11_500)
    finally:
        blocker.rollback()
        blocker.close()
    assert result["status"] == "timeout" and result["seconds"] < 1.5 + 3.5
    assert invoke(unpacked, env, {"command": "drop"}, 60_000)["status"] == "rejected"


@pytest.mark.slow
def test_the_handler_runs_the_whole_job_from_the_unpacked_zip(unpacked, settings, elt_env,
                                                             tmp_path):
    """`elt run` from the unpacked task: dbt builds the project the zip carries, with its
    target and logs under ELT_HOME (Lambda's /tmp), nothing written into the task."""
    s, env = fresh(settings, elt_env, tmp_path, "lambda_run", scale=0.002)
    before = sorted(p for p in unpacked.rglob("*") if "__pycache__" not in p.parts)
    result = invoke(unpacked, {**env, "ELT_DBT_THREADS": "2"}, {"command": "run"},
                    remaining_ms=870_000)  # Lambda allows 15 minutes
    assert result["status"] == "success", result
    assert any("SUCCESS" in line for line in result["output"])
    assert query(s.warehouse, "select status from ops.pipeline_runs") == [("success",)]
    assert (tmp_path / "lambda_run" / "target" / "run_results.json").exists()
    after = sorted(p for p in unpacked.rglob("*") if "__pycache__" not in p.parts)
    assert after == before  # Lambda's /var/task is read-only
