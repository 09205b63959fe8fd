"""Property-based tests (hypothesis) over the log parser, the field mapper and the archive
reader: whatever the bytes, they answer or raise the one documented error, never anything else.

Bounded example counts keep the whole file to a few seconds; `fuzz/` holds the long-running
coverage-guided harnesses."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import tempfile
import zipfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from camleak import archives
from camleak.errors import InputError
from camleak.logparse import (CANONICAL_FIELDS, FieldMapError, MapUsage, canonicalise, iter_csv, iter_jsonl, lookup,
                              parse_field_map)
from camleak.timeutil import format_ts, parse_ts

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=12)
field_names = st.sampled_from(CANONICAL_FIELDS) | st.text(max_size=10)


@FAST
@given(json_scalars | st.lists(st.integers(), max_size=2) | st.text(alphabet="0123456789-:TZ.+ ,/", max_size=32))
def test_parse_ts_returns_a_sane_time_or_value_error(value):
    try:
        ms = parse_ts(value)
    except ValueError:
        return
    assert isinstance(ms, int) and 0 <= ms <= 253_402_300_799_999
    assert parse_ts(format_ts(ms)) == ms  # what camleak writes, it reads back


@FAST
@given(st.binary(max_size=2000))
def test_jsonl_parser_never_raises_and_accounts_for_every_line(blob):
    parsed = list(iter_jsonl(io.BytesIO(blob), {}, MapUsage()))
    numbers = [p.line for p in parsed]
    assert numbers == sorted(set(numbers))
    assert all((p.event is None) != (p.error is None) for p in parsed)
    non_blank = sum(1 for line in blob.splitlines(keepends=True) if line.strip() and line.strip() != b"\xef\xbb\xbf")
    assert len(parsed) <= max(non_blank, 0) + 1


@FAST
@given(st.lists(st.dictionaries(field_names, json_values, max_size=8), max_size=6))
def test_jsonl_records_of_any_shape(records):
    blob = b"".join(json.dumps(r).encode() + b"\n" for r in records)
    parsed = list(iter_jsonl(io.BytesIO(blob), {}, MapUsage()))
    assert len(parsed) == len(records)
    for item in parsed:
        if item.event is not None:
            for name in CANONICAL_FIELDS:
                assert item.event[name] is None or isinstance(item.event[name], str)
            assert item.event["account_id"] and item.event["event"]


@FAST
@given(st.binary(max_size=2000))
def test_csv_parser_never_raises(blob):
    for item in iter_csv(io.BytesIO(b"ts,account_id,event\n" + blob), {}, MapUsage()):
        assert (item.event is None) != (item.error is None)


@FAST
@given(st.lists(st.text(max_size=30), max_size=5))
def test_field_map_parses_or_says_why(items):
    try:
        mapping = parse_field_map(items)
    except FieldMapError as exc:
        assert "--field" in str(exc)
        return
    assert set(mapping) <= set(CANONICAL_FIELDS)


path_parts = st.text(alphabet="abcXYZ_-", min_size=1, max_size=6)


ids = st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)


@FAST
@given(st.lists(path_parts, min_size=1, max_size=5), ids, json_values)
def test_field_mapper_finds_a_value_at_any_dotted_path(parts, value, noise):
    record: dict = {"~noise": noise}
    node = record
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    assert lookup(record, ".".join(parts)) == value
    base = {"ts": 1763640000, "account_id": "a", "event": "e"}
    try:
        event = canonicalise(base | record, {"device_id": ".".join(parts)}, MapUsage())
    except ValueError:
        return  # a value that cannot be an id (a boolean, say) is refused, never stored
    assert event["device_id"] in (None, str(value))


member_names = st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), min_size=1, max_size=40) | \
    st.sampled_from(["../up.jpg", "/abs.jpg", "a/../../b.png", "./x.jpg", "C:\\win.jpg", "manifest.jsonl"])


@FAST
@given(st.lists(st.tuples(member_names, st.binary(max_size=300)), max_size=6), st.sampled_from(["w", "w:gz"]))
def test_tar_reader_round_trips_any_names_first_name_wins(entries, mode):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("a.tar" if mode == "w" else "a.tar.gz")
        entries = [(name, data) for name, data in entries if not name.endswith("/")]  # folders, not files
        with tarfile.open(path, mode, format=tarfile.PAX_FORMAT) as archive:
            for name, data in entries:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
        members = list(archives.iter_members(path))
    read = {m.name: m.data for m in members if not m.skipped}
    expected: dict[str, bytes] = {}
    for name, data in entries:
        expected.setdefault(name, data)
    assert read == expected


def test_a_tar_whose_member_holds_a_zip_end_record_is_still_a_tar(tmp_path):
    # Found by the property test above: zipfile.is_zipfile finds b"PK\x05\x06" inside member data.
    path = tmp_path / "a.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in (("s1.jpg", b"PK\x05\x06"), ("s2.jpg", b"PK\x05\x06" + bytes(18))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    assert archives.archive_kind(path) == "tar"
    assert {m.name: m.data for m in archives.iter_members(path)} == {"s1.jpg": b"PK\x05\x06", "s2.jpg": b"PK\x05\x06" + bytes(18)}


@FAST
@given(st.binary(min_size=1, max_size=3000), st.sampled_from(["x.tar", "x.tar.gz", "x.zip", "x.tgz", "x.tar.zst"]))
def test_archive_reader_on_arbitrary_bytes_raises_only_input_error(blob, name):
    _read_or_input_error(blob, name)


def _valid_archives() -> list[tuple[str, bytes]]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        for i in range(3):
            info = tarfile.TarInfo(f"d/s{i}.jpg")
            data = bytes([i]) * 700
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(3):
            archive.writestr(f"s{i}.jpg", bytes([i]) * 700)
    return [("a.tar", raw.getvalue()), ("a.tar.gz", gzip.compress(raw.getvalue())), ("a.zip", zipped.getvalue())]


VALID = _valid_archives()


@FAST
@given(st.sampled_from(range(len(VALID))), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
       st.integers(0, 10_000) | st.none())
def test_archive_reader_on_damaged_archives(which, flips, cut):
    name, blob = VALID[which]
    data = bytearray(blob)
    for position, value in flips:
        data[position % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    _read_or_input_error(bytes(data), name)


def _read_or_input_error(blob: bytes, name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(blob)
        try:
            members = list(archives.iter_members(path))
        except InputError as exc:
            assert name in str(exc)
            return
    for member in members:
        assert isinstance(member.name, str)
        member.name.encode("utf-8")  # storable as text
        assert member.skipped == (member.problem is not None)
        assert member.skipped or isinstance(member.data, bytes)
