"""The loader's dlt destination: the manifest each export hands to dlt (a real CSV naming
a binary COPY file) and capabilities."""

from __future__ import annotations

import csv

import pytest
from dlt.common.destination.exceptions import DestinationTerminalException

from loader.extract.binary_copy import (
    MANIFEST_HEADER,
    PGCOPY_SIGNATURE,
    read_manifest,
    write_manifest,
)

COLUMNS = ["order_id", "note, free text", "_loaded_at"]  # a column name may hold a comma
STREAM = PGCOPY_SIGNATURE + b"\x00\x00\x00\x00\x00\x00\x00\x00" + b"\xff\xff"


def _export(tmp_path, data: bytes = STREAM):
    data_file = tmp_path / "orders.1732791234.5.pgcopy"
    data_file.write_bytes(data)
    manifest = write_manifest(tmp_path / "orders.1732791234.5.csv", data_file, 3,
                              COLUMNS)
    return data_file, manifest


def test_each_file_is_named_by_its_format_and_the_csv_manifest_names_the_copy_file(tmp_path):
    data_file, manifest = _export(tmp_path)
    assert manifest.suffix == ".csv" and data_file.suffix == ".pgcopy"
    with manifest.open(newline="") as handle:
        rows = list(csv.reader(handle))  # any CSV reader reads it
    assert rows == [list(MANIFEST_HEADER),
                    [str(data_file.resolve()), "3", str(len(STREAM)),
                     '["order_id", "note, free text", "_loaded_at"]']]
    read = read_manifest(str(manifest))
    assert (read.path, read.rows, read.size, read.columns) == (
        str(data_file.resolve()), 3, len(STREAM), COLUMNS)
    with read.open() as handle:
        assert handle.read() == STREAM  # the export file is the COPY stream and nothing else


def test_dlt_csv_files_are_left_to_dlt(tmp_path):
    path = tmp_path / "orders.2.csv"
    path.write_text("order_id,status\n1,paid\n")
    assert read_manifest(str(path)) is None


def test_a_changed_or_missing_export_file_fails_the_job_and_says_what_happens(tmp_path):
    data_file, manifest = _export(tmp_path)
    data_file.write_bytes(STREAM[:-1])  # cut short
    with pytest.raises(DestinationTerminalException, match="is not the one this load package"):
        read_manifest(str(manifest)).open()
    data_file.unlink()
    with pytest.raises(DestinationTerminalException, match="extracts again from the last"):
        read_manifest(str(manifest)).open()


def test_the_destination_resolves_its_capabilities_once_per_load(monkeypatch):
    from dlt.destinations.impl.postgres.factory import postgres

    from loader.extract.binary_copy import postgres_binary_copy

    calls = []
    resolve = postgres.capabilities

    def counted(self, config=None, naming=None):
        calls.append(config)
        return resolve(self, config, naming)

    monkeypatch.setattr(postgres, "capabilities", counted)
    destination = postgres_binary_copy(credentials="postgresql://u:p@127.0.0.1:5432/db")
    first, second = destination.capabilities(), destination.capabilities()
    assert len(calls) == 1
    assert first is not second and vars(first) == vars(second)
    first.max_identifier_length = 3  # a caller's change stays its own
    assert destination.capabilities().max_identifier_length == second.max_identifier_length
    assert "csv" in second.supported_loader_file_formats
