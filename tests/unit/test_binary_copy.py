"""The loader's dlt destination: export files (a binary COPY stream naming its columns in a
footer) and capabilities."""

from __future__ import annotations

from loader.extract.binary_copy import (
    MAGIC,
    PGCOPY_SIGNATURE,
    is_binary_copy_file,
    open_export,
    write_footer,
)

# a COPY stream may hold any bytes, our marker included: only the last one is the footer
STREAM = PGCOPY_SIGNATURE + b"\x00\x00\x00\x00\x00\x00\x00\x00" + MAGIC + b"x,y\n" + b"\xff\xff"


def test_the_footer_names_the_columns_and_the_stream_stops_before_it(tmp_path):
    path = tmp_path / "orders.1.pgcopy"
    with path.open("wb") as handle:
        handle.write(STREAM)
        write_footer(handle, ["order_id", "status", "_loaded_at"])
    with open_export(str(path)) as (names, stream):
        assert names == ["order_id", "status", "_loaded_at"]
        assert stream.read(7) + stream.read(1 << 20) + stream.read() == STREAM
    assert is_binary_copy_file(str(path))


def test_files_of_earlier_versions_name_their_columns_in_a_header(tmp_path):
    path = tmp_path / "orders.0.pgcopy"
    path.write_bytes(MAGIC + b"order_id,status\n" + STREAM)
    with open_export(str(path)) as (names, stream):
        assert names == ["order_id", "status"]
        assert stream.read() == STREAM
    assert is_binary_copy_file(str(path))


def test_dlt_csv_files_are_left_to_dlt(tmp_path):
    path = tmp_path / "orders.2.pgcopy"
    path.write_text("order_id,status\n1,paid\n")
    assert not is_binary_copy_file(str(path))


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
