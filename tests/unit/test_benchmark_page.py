"""`make bench` rewrites docs/benchmarks.md from its results: the sections it does not measure
(scripts run on their own, notes written by hand) stay on the page."""

from __future__ import annotations

from benchmarks import run_all


def test_rewriting_the_page_keeps_the_sections_this_run_does_not_write(tmp_path, monkeypatch):
    page = tmp_path / "benchmarks.md"
    page.write_text(
        "# Benchmarks\n\nold intro\n\n"
        "## 5. Initial load (`benchmarks/load_throughput.py`), scale 1\n\nold numbers\n\n"
        "## What elementary costs (`benchmarks/elementary_cost.py`), scale 1\n\nkept A\n\n"
        "## dbt's parse between runs\n\nkept B\n"
    )
    monkeypatch.setattr(run_all, "DOC", page)
    generated = ["# Benchmarks", "new intro",
                 "## 5. Initial load (`benchmarks/load_throughput.py`), scale 0.1\n\nnew numbers"]
    kept = run_all.kept_sections(generated)
    # the load section is rewritten (same script, another scale): only the new one is written
    assert kept == [
        "## What elementary costs (`benchmarks/elementary_cost.py`), scale 1\n\nkept A",
        "## dbt's parse between runs\n\nkept B",
    ]


def test_a_first_page_keeps_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(run_all, "DOC", tmp_path / "missing.md")
    assert run_all.kept_sections(["## 1. Loading N rows\n\nx"]) == []
