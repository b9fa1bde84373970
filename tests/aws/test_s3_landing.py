"""The S3 landing zone: loads land Parquet per table and load; a backfill from S3 rebuilds
raw without the source; exports stream to S3."""

from __future__ import annotations

import dataclasses
import io

import pyarrow.parquet as pq
import pytest

from loader.aws.landing import backfill_from_s3, landed_loads
from loader.cli import main
from loader.config import Endpoint
from loader.extract.pipeline import run_load
from loader.extract.plan import LoadRequest
from loader.extract.tables import load_config
from loader.orchestrate import history
from loader.source import simulator
from tests.conftest import query
from tests.integration.test_loader import assert_raw_equals_source, fresh

BUCKET = "elt-landing"


@pytest.fixture(scope="module")
def landed(settings, elt_env, aws, tmp_path_factory):
    """A source loaded twice (initial, then one simulated day) with ELT_S3_URL set."""
    import boto3

    boto3.session.Session().client("s3").create_bucket(Bucket=BUCKET)
    s, env = fresh(settings, elt_env, tmp_path_factory.mktemp("landing"), "landing",
                   scale=0.002, ELT_S3_URL=f"s3://{BUCKET}/zone/")
    config = load_config(s.tables_config)
    first = run_load(s, config)
    simulator.advance(s.source, 1)
    second = run_load(s, config)
    return s, env, config, first, second


def read_object(s3, key: str):
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return pq.read_table(io.BytesIO(body))


def test_every_load_lands_parquet_per_table_and_load(landed, boto):
    s, _, config, first, second = landed
    s3 = boto("s3")
    for table in config.tables:
        key = f"zone/table={table}/load_id={first.load_id}/data.parquet"
        data = read_object(s3, key)
        assert data.schema.metadata[b"elt.disposition"] == b"replace"
        assert data.num_rows == first.tables[table].rows_extracted
        assert "_loaded_at" in data.column_names
    assert landed_loads(s, "orders") == [first.load_id, second.load_id]
    orders = read_object(s3, f"zone/table=orders/load_id={second.load_id}/data.parquet")
    assert orders.num_rows == second.tables["orders"].rows_extracted > 0
    assert orders.schema.metadata[b"elt.disposition"] == b"merge"
    # typed as raw types them: keys, money, timestamps in UTC
    assert str(orders.schema.field("order_id").type) == "int64"
    assert orders.schema.field("updated_at").type.tz == "UTC"
    # the day's hard deletes of the cdc tables land beside their rows, for the replay
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="zone/")["Contents"]]
    assert any(k.endswith(f"load_id={second.load_id}/deletes.parquet") for k in keys)


def test_a_backfill_from_s3_rebuilds_an_emptied_raw_without_the_source(landed, settings):
    s, _, config, _, _ = landed
    for table in config.tables:
        query_commit(s.warehouse, f"truncate {config.dataset}.{table}")
    assert query(s.warehouse, f"select count(*) from {config.dataset}.orders") == [(0,)]
    # the source is unreachable: the replay must not need it
    offline = dataclasses.replace(s, source=Endpoint("127.0.0.1", 9, "nobody", "nowhere"))
    (built_at,) = query(s.warehouse, "select now()::text")[0]
    for table in config.tables:
        replay = backfill_from_s3(offline, config, table)
        assert len(replay.loads) == 2
    assert_raw_equals_source(s, config)
    assert history.raw_changed_since(s.warehouse, built_at), "the next elt run builds dbt"


def test_backfill_from_s3_by_the_cli_in_a_window(landed, monkeypatch, capsys):
    s, env, config, first, second = landed
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ELT_SOURCE_URL", "postgresql://nobody@127.0.0.1:9/nowhere")
    query_commit(s.warehouse, f"truncate {config.dataset}.products")
    assert main(["backfill", "products", "--from-s3"]) == 0
    assert "2 landed load(s) replayed" in capsys.readouterr().out
    assert_raw_equals_source(s, config)
    assert main(["backfill", "products", "--from-s3", "--start", "2000-01-01",
                 "--end", "2000-01-02"]) == 2  # nothing landed then: says so


def test_export_streams_tables_to_s3_as_parquet(landed, boto, monkeypatch, capsys):
    s, env, config, _, _ = landed
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["export", "raw_marketplace.bids", "raw_marketplace.customers",
                 "--to", f"s3://{BUCKET}/exports"]) == 0
    bids = read_object(boto("s3"), "exports/raw_marketplace/bids.parquet")
    assert bids.num_rows == query(s.warehouse, "select count(*) from raw_marketplace.bids")[0][0]
    assert "raw_marketplace.customers" in capsys.readouterr().out


def query_commit(endpoint, statement: str) -> None:
    from loader.db import connect_raw

    conn = connect_raw(endpoint)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def test_multipart_writer_uploads_in_parts_and_aborts_cleanly(boto):
    from loader.aws.s3 import MultipartWriter

    s3 = boto("s3")
    s3.create_bucket(Bucket="elt-parts")
    payload = bytes(range(256)) * (11 * 4096)  # 11 MiB: two full parts of 5 MiB and a tail
    with MultipartWriter(s3, "elt-parts", "parts/object.bin", part_size=5 << 20) as sink:
        for start in range(0, len(payload), 1 << 20):
            sink.write(payload[start:start + (1 << 20)])
        assert len(sink.parts) == 2 and sink.tell() == len(payload)
    assert len(sink.parts) == 3
    assert s3.get_object(Bucket="elt-parts", Key="parts/object.bin")["Body"].read() == payload
    with pytest.raises(RuntimeError), MultipartWriter(s3, "elt-parts", "parts/failed.bin") as sink:
        sink.write(b"half a file")
        raise RuntimeError("the export failed")
    assert "Contents" not in s3.list_objects_v2(Bucket="elt-parts", Prefix="parts/failed")
    assert not s3.list_multipart_uploads(Bucket="elt-parts").get("Uploads")


def test_a_failed_landing_fails_the_load_and_says_how_to_repair(settings, elt_env, aws,
                                                                 tmp_path):
    from loader.extract.results import LoadError

    s, _ = fresh(settings, elt_env, tmp_path, "landing_fail", scale=0.002,
                 ELT_S3_URL="s3://no-such-bucket/zone")
    with pytest.raises(LoadError, match="committed to raw, but landing it") as failed:
        run_load(s, load_config(s.tables_config), LoadRequest(["customers"]))
    assert "elt load --full-refresh customers" in str(failed.value)
    assert query(s.warehouse, "select count(*) > 0 from raw_marketplace.customers") == [(True,)]


def test_a_repair_by_deep_reconciliation_is_landed_and_replayed(landed):
    """Changes the loader could not see (triggers off): the deep reconciliation repairs raw,
    and the landing zone gets the repair, so a replay from S3 agrees with the source."""
    from loader.extract.repair import deep_reconcile

    s, _, config, _, _ = landed
    query_commit(s.source, """
        set session_replication_role = replica;
        update marketplace.customers set email = 'repaired@example.com'
         where customer_id = (select min(customer_id) from marketplace.customers);
        delete from marketplace.bids where bid_id = (select max(bid_id) from marketplace.bids);
    """)
    diffs = deep_reconcile(s, config, ["customers", "bids"], repair=True)
    assert {d.table for d in diffs} == {"customers", "bids"}
    assert_raw_equals_source(s, config)
    assert len(landed_loads(s, "customers")) == 3 and len(landed_loads(s, "bids")) == 3
    for table in ("customers", "bids"):
        query_commit(s.warehouse, f"truncate {config.dataset}.{table}")
        backfill_from_s3(s, config, table)
    assert_raw_equals_source(s, config)
