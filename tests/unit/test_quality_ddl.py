"""The dbt hook and the Python results store create the same quality.dbt_* tables."""

import re

from loader.config import PROJECT_ROOT
from loader.quality.store import DDL


def table_ddl(text: str, table: str) -> str:
    match = re.search(rf"create table if not exists quality\.{table} \((.*?)\n\s*\);", text,
                      re.S)
    assert match, f"quality.{table} is not created"
    return " ".join(match.group(1).split())


def test_hook_and_store_define_the_dbt_result_tables_identically():
    hook = (PROJECT_ROOT / "macros" / "quality" / "store_run_results.sql").read_text()
    for table in ("dbt_invocations", "dbt_results"):
        assert table_ddl(hook, table) == table_ddl(DDL, table), (
            f"quality.{table} differs between macros/quality/store_run_results.sql and "
            "loader/quality/store.py: change both"
        )
