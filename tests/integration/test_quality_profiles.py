"""Profiles in `elt report` on PostgreSQL: a whole-table profile is computed exactly on the
first run and whenever the stored one cannot stand for the table (columns changed, table
rebuilt, due by age or by the share of rows loaded since); otherwise it is carried forward,
labelled with when it was computed, and only the rows loaded since are profiled."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from loader.config import Settings
from loader.quality import build_report
from loader.quality.report import QualityReport
from tests.conftest import create_database, query

DB = "quality_profiles"
TABLE = """
create table shop.{name} as
select g as item_id, case when g % 10 = 0 then null else 'item ' || g end as label,
       (g % 7)::numeric as price, timestamptz '2026-06-01 00:00+00' as _loaded_at
from generate_series(1, 1000) as g;
"""


@pytest.fixture(scope="module")
def warehouse(settings: Settings) -> Iterator[Settings]:
    create_database(settings, DB)
    local = dataclasses.replace(
        settings,
        warehouse=settings.warehouse.with_database(DB),
        source=settings.warehouse.with_database(DB),
    )
    execute(local, "create schema shop")
    yield local


def execute(settings: Settings, statement: str, params=None) -> None:
    from loader.db import connect_raw

    conn = connect_raw(settings.warehouse, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
            # the insert/update/delete counts reach pg_stat_all_tables when the session goes
            # idle (about a second); a report right after must see them
            cur.execute("select pg_stat_force_next_flush()")
            cur.execute("select 1")
    finally:
        conn.close()


def configured(
    settings: Settings, tmp_path: Path, table: str, profiling: str = "stamped: [shop]"
) -> Settings:
    """Profile shop.<table>; the tests load shop as the loader loads raw (stamped)."""
    path = tmp_path / "monitors.yml"
    path.write_text(f"profiling: {{{profiling}}}\nprofiles:\n  - shop.{table}\n")
    quality = dataclasses.replace(
        settings.quality, monitors_config=path, reports_dir=tmp_path / "reports"
    )
    return dataclasses.replace(settings, quality=quality)


def make_table(settings: Settings, name: str) -> None:
    execute(settings, f"drop table if exists shop.{name}")
    execute(settings, TABLE.format(name=name))


def load(settings: Settings, name: str, rows: int, at: str = "2026-06-02 00:00+00") -> None:
    """Rows as the loader writes them: one new _loaded_at stamp per load."""
    execute(
        settings,
        f"""insert into shop.{name}
            select 100000 + g, case when g %% 2 = 0 then null else 'new ' || g end, 500,
                   %s::timestamptz
            from generate_series(1, %s) as g""",
        (at, rows),
    )


def profile_check(report: QualityReport, name: str):
    return next(c for c in report.checks if c.check_id == f"profile:shop.{name}")


def column(report: QualityReport, name: str, col: str = "label"):
    return next(p for p in report.profiles if p.table_name == name and p.column_name == col)


def test_a_first_run_profiles_every_row_exactly(warehouse: Settings, tmp_path: Path) -> None:
    make_table(warehouse, "first")
    report = build_report(configured(warehouse, tmp_path, "first"))
    check = profile_check(report, "first")
    assert check.details["basis"] == "computed" and "no stored profile" in check.message
    label = column(report, "first")
    assert (label.row_count, label.null_count, label.distinct_count) == (1000, 100, 900)
    assert label.profiled_run_id == report.run_id and label.recent_rows is None


def test_an_unchanged_table_reuses_its_profile_and_says_so(
    warehouse: Settings, tmp_path: Path
) -> None:
    make_table(warehouse, "unchanged")
    settings = configured(warehouse, tmp_path, "unchanged")
    first = build_report(settings)
    second = build_report(settings)
    check = profile_check(second, "unchanged")
    assert check.details["basis"] == "reused"
    assert "no row inserted, updated or deleted since" in check.message
    assert first.run_id in check.message
    label = column(second, "unchanged")
    assert label.profiled_run_id == first.run_id and label.basis == "reused"
    assert (label.row_count, label.null_count, label.distinct_count) == (1000, 100, 900)
    stored = query(
        warehouse.warehouse,
        "select basis, profiled_run_id, null_count from quality.profiles "
        "where run_id = %s and table_name = 'unchanged' and column_name = 'label'",
        (second.run_id,),
    )
    assert stored == [("reused", first.run_id, 100)]


def test_rows_loaded_since_are_profiled_on_their_own(warehouse: Settings, tmp_path: Path) -> None:
    make_table(warehouse, "grown")
    settings = configured(warehouse, tmp_path, "grown")
    first = build_report(settings)
    load(warehouse, "grown", 50)
    second = build_report(settings)
    check = profile_check(second, "grown")
    assert check.details["basis"] == "reused" and check.details["recent_rows"] == 50
    assert "as of" in check.message and "50 rows loaded since" in check.message
    label = column(second, "grown")
    # the whole-table numbers stay those of the first run, the recent ones cover the 50 rows
    assert (label.row_count, label.null_count, label.profiled_run_id) == (1000, 100, first.run_id)
    assert (label.recent_rows, label.recent_null_count, label.recent_distinct_count) == (
        50,
        25,
        25,
    )
    price = column(second, "grown", "price")
    assert price.recent_max_value == "500" and price.max_value == "6"
    html = second.html_path.read_text()
    assert "only the 50 rows loaded" in html and "carried forward" in html


def test_loading_more_than_the_threshold_recomputes_the_whole_table(
    warehouse: Settings, tmp_path: Path
) -> None:
    make_table(warehouse, "backfilled")
    settings = configured(warehouse, tmp_path, "backfilled")
    build_report(settings)
    load(warehouse, "backfilled", 200)  # 20% of the table, over the default 10%
    report = build_report(settings)
    check = profile_check(report, "backfilled")
    assert check.details["basis"] == "computed" and "more than 10%" in check.message
    assert column(report, "backfilled").row_count == 1200


def test_a_profile_older_than_refresh_days_is_recomputed(
    warehouse: Settings, tmp_path: Path
) -> None:
    make_table(warehouse, "aged")
    settings = configured(warehouse, tmp_path, "aged", "refresh_days: 7, stamped: [shop]")
    build_report(settings)
    execute(
        warehouse,
        "update quality.profiles set profiled_at = profiled_at - interval '8 days' "
        "where table_name = 'aged'",
    )
    load(warehouse, "aged", 5)
    check = profile_check(build_report(settings), "aged")
    assert check.details["basis"] == "computed" and "older than 7 days" in check.message


def test_changed_columns_or_a_rebuilt_table_are_profiled_whole(
    warehouse: Settings, tmp_path: Path
) -> None:
    make_table(warehouse, "reshaped")
    settings = configured(warehouse, tmp_path, "reshaped")
    build_report(settings)
    execute(warehouse, "alter table shop.reshaped add column colour text default 'red'")
    check = profile_check(build_report(settings), "reshaped")
    assert check.details["basis"] == "computed" and "columns changed" in check.message
    # what dbt does to a table model: build a new relation with the same columns, swap it in
    execute(warehouse, "create table shop.reshaped_tmp as select * from shop.reshaped")
    execute(warehouse, "update shop.reshaped_tmp set label = 'renamed'")
    execute(warehouse, "drop table shop.reshaped")
    execute(warehouse, "alter table shop.reshaped_tmp rename to reshaped")
    report = build_report(settings)
    check = profile_check(report, "reshaped")
    assert check.details["basis"] == "computed" and "rebuilt" in check.message
    assert column(report, "reshaped").distinct_count == 1


def test_a_table_without_loaded_at_is_profiled_whole_every_run(
    warehouse: Settings, tmp_path: Path
) -> None:
    execute(warehouse, "create table shop.plain as select g as n from generate_series(1, 10) g")
    settings = configured(warehouse, tmp_path, "plain")
    build_report(settings)
    check = profile_check(build_report(settings), "plain")
    assert check.details["basis"] == "computed" and "no _loaded_at" in check.message


def test_completeness_and_freshness_read_a_raw_table_once(
    warehouse: Settings, tmp_path: Path
) -> None:
    from loader.db import connect_raw
    from loader.quality.checks import TableScans, completeness_checks
    from loader.quality.monitors import load_quality_config

    make_table(warehouse, "scanned")
    path = tmp_path / "monitors.yml"
    path.write_text("completeness:\n  tables:\n    shop.scanned: {label: 5, price: 0}\n")
    config = load_quality_config(path)
    conn = connect_raw(warehouse.warehouse)
    try:
        scans = TableScans(conn)
        scans.want("shop.scanned", nulls=("label", "price"), newest=("_loaded_at",))
        checks = {c.check_id: c for c in completeness_checks(conn, config, scans)}
        assert checks["completeness:shop.scanned.label"].status == "fail"  # 10% > 5%
        assert checks["completeness:shop.scanned.label"].message.startswith("100 of 1,000")
        assert checks["completeness:shop.scanned.price"].status == "pass"
        conn.commit()
        execute(warehouse, "truncate shop.scanned")  # a second scan would now see no rows
        assert scans.newest_value("shop.scanned", "_loaded_at") is not None
    finally:
        conn.close()


def test_a_changed_table_that_is_not_stamped_is_profiled_whole(
    warehouse: Settings, tmp_path: Path
) -> None:
    """As a dbt model updates a customer's lifetime value without a new _loaded_at."""
    make_table(warehouse, "derived")
    settings = configured(warehouse, tmp_path, "derived", "stamped: [raw_marketplace, shop.other]")
    build_report(settings)
    check = profile_check(build_report(settings), "derived")
    assert check.details["basis"] == "reused"  # nothing changed: carried forward
    execute(warehouse, "update shop.derived set price = 99 where item_id <= 10")
    report = build_report(settings)
    check = profile_check(report, "derived")
    assert check.details["basis"] == "computed" and "does not mark" in check.message
    assert column(report, "derived", "price").max_value == "99"


def test_rows_deleted_from_a_stamped_table_are_said_not_hidden(
    warehouse: Settings, tmp_path: Path
) -> None:
    make_table(warehouse, "pruned")
    settings = configured(warehouse, tmp_path, "pruned")
    build_report(settings)
    execute(warehouse, "delete from shop.pruned where item_id <= 10")
    check = profile_check(build_report(settings), "pruned")
    assert check.details["basis"] == "reused" and "deleted" in check.message
