"""Hostile and broken snapshot archives: read what can be read, say why not for the rest,
never write outside the case, never run away with memory or time."""

from __future__ import annotations

import gzip
import io
import json
import os
import stat
import tarfile

import pytest
import zstandard
from typer.testing import CliRunner

from camleak import archives
from camleak.casefile import Case
from camleak.cli import app
from camleak.errors import InputError
from camleak.fingerprint import fingerprint_case, fingerprint_one
from camleak.ingest import ingest_snapshots

from conftest import write_tar, write_zip
from hostile import (corrupt_central_directory, flag_encrypted, image_bytes, tar_entry, tree_snapshot,
                     write_raw_tar, zip_bomb, zip_with)


@pytest.fixture
def case(tmp_path):
    with Case(tmp_path / "case" / "case.db") as c:
        yield c


def frames(case):
    return sorted(r["snapshot"] for r in case.db.query("select snapshot from frames"))


def problems(case, kind=None):
    sql = "select kind, member, message from problems" + (" where kind = ?" if kind else "") + " order by id"
    return list(case.db.query(sql, [kind] if kind else []))


def test_paths_outside_the_archive_are_read_in_memory_and_nothing_is_written(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    entries = [tar_entry("../escape.jpg", image_bytes(1)), tar_entry("/tmp/abs.jpg", image_bytes(2)),
               tar_entry("a/../../../up.jpg", image_bytes(3)), tar_entry("fine/ok.jpg", image_bytes(4))]
    write_raw_tar(work / "evil.tar.gz", entries)
    zip_with(work / "evil.zip", [("../../zescape.jpg", image_bytes(5), None), ("/zabs.jpg", image_bytes(6), None)])
    before = tree_snapshot(tmp_path)
    cwd = os.getcwd()
    os.chdir(work)  # a relative '../' would land in tmp_path if anything extracted
    try:
        result = CliRunner().invoke(app, ["ingest", "snapshots", "--case", "case/c.db", "evil.tar.gz", "evil.zip"])
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output
    written = set(tree_snapshot(tmp_path)) - set(before)
    assert written and all(p.startswith("work/case") for p in written), written
    assert not (tmp_path / "escape.jpg").exists() and not os.path.exists("/tmp/abs.jpg")
    with Case(work / "case" / "c.db") as c:
        assert frames(c) == ["abs", "escape", "ok", "up", "zabs", "zescape"]
        assert len(problems(c, "unsafe_member_path")) == 5


def test_links_and_device_entries_are_counted_not_followed(case, tmp_path):
    entries = [tar_entry("a.jpg", image_bytes(1)),
               tar_entry("sym.jpg", kind=tarfile.SYMTYPE, linkname="/etc/passwd"),
               tar_entry("hard.jpg", kind=tarfile.LNKTYPE, linkname="a.jpg"),
               tar_entry("dev.jpg", kind=tarfile.CHRTYPE), tar_entry("blk", kind=tarfile.BLKTYPE),
               tar_entry("fifo.jpg", kind=tarfile.FIFOTYPE)]
    write_raw_tar(tmp_path / "links.tar", entries, "w")
    zip_with(tmp_path / "links.zip", [("z.jpg", image_bytes(2), 0o100644), ("zsym.jpg", b"/etc/passwd", 0o120777),
                                      ("zchr.jpg", b"", 0o020644)])
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "d.jpg").write_bytes(image_bytes(3))
    (folder / "dsym.jpg").symlink_to("/etc/passwd")
    os.mkfifo(folder / "dfifo.jpg")  # reading it would block forever
    stats = ingest_snapshots(case, [tmp_path / "links.tar", tmp_path / "links.zip", folder])
    assert frames(case) == ["a", "d", "z"] and stats.items == 3
    kinds = sorted((p["kind"], p["member"]) for p in problems(case))
    assert kinds == [("link_member", "dsym.jpg"), ("link_member", "hard.jpg"), ("link_member", "sym.jpg"),
                     ("link_member", "zsym.jpg"), ("special_member", "blk"), ("special_member", "dev.jpg"),
                     ("special_member", "dfifo.jpg"), ("special_member", "fifo.jpg"), ("special_member", "zchr.jpg")]
    assert stats.skipped == 9
    # the fingerprint stage reads the same archives again without tripping on the same entries
    assert fingerprint_case(case, workers=1).ok == 3


def test_a_repeated_member_name_keeps_the_first_bytes_in_every_stage(case, tmp_path):
    first, second = image_bytes(1), image_bytes(2)
    write_raw_tar(tmp_path / "dup.tar.gz", [tar_entry("s/a.jpg", b"not an image at all"), tar_entry("s/a.jpg", first),
                                            tar_entry("s/b.jpg", first), tar_entry("s/b.jpg", second)])
    stats = ingest_snapshots(case, [tmp_path / "dup.tar.gz"])
    assert [(p["kind"], p["member"]) for p in problems(case) if p["kind"] == "duplicate_member_name"] == [
        ("duplicate_member_name", "s/a.jpg"), ("duplicate_member_name", "s/b.jpg")]
    assert stats.items == 2  # a (named like an image: kept as undecodable) and b (the first bytes)
    fingerprint_case(case, workers=1)
    rows = {r["frame_id"]: r for r in case.db.query("select * from fingerprints")}
    assert rows["s:a"]["status"] == "undecodable"
    assert rows["s:b"]["phash"] == fingerprint_one("x", first)["phash"]


def test_non_utf8_member_names(case, tmp_path):
    name = b"caf\xe9-\xff.jpg".decode("utf-8", "surrogateescape")
    write_raw_tar(tmp_path / "latin1.tar", [tar_entry(name, image_bytes(1))], "w")
    folder = tmp_path / "dir"
    folder.mkdir()
    with open(os.path.join(os.fsencode(folder), b"k\xe9y.jpg"), "wb") as fh:
        fh.write(image_bytes(2))
    stats = ingest_snapshots(case, [tmp_path / "latin1.tar", folder])
    assert stats.items == 2
    assert frames(case) == ["caf\\xe9-\\xff", "k\\xe9y"]
    assert fingerprint_case(case, workers=1).ok == 2


def test_deeply_nested_members_and_folders(case, tmp_path):
    deep_name = "/".join(["d"] * 400) + "/deep.jpg"
    write_raw_tar(tmp_path / "deep.tar.gz", [tar_entry(deep_name, image_bytes(1))])
    folder = tmp_path / "tree"
    folder.mkdir()
    fd = os.open(folder, os.O_RDONLY)
    for _ in range(1100):  # deeper than Python's recursion limit; built one level at a time
        os.mkdir("n", dir_fd=fd)
        inner = os.open("n", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = inner
    out = os.open("bottom.jpg", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd)
    os.write(out, image_bytes(2))
    os.close(out)
    os.close(fd)
    try:
        stats = ingest_snapshots(case, [tmp_path / "deep.tar.gz", folder])
        assert stats.items == 2 and frames(case) == ["bottom", "deep"]
        assert fingerprint_case(case, workers=1).ok == 2
    finally:
        _remove_deep(folder)  # shutil.rmtree (and so pytest's cleanup) recurses per level


def _remove_deep(root):
    """Delete a very deep tree without recursion: walk down, then remove bottom-up."""
    chain = [root]
    while True:
        entries = [e for e in os.scandir(chain[-1])]
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False):
                os.unlink(entry.path)
        folders = [e.path for e in entries if e.is_dir(follow_symlinks=False)]
        if not folders:
            break
        chain.append(folders[0])
    for folder in reversed(chain):
        os.rmdir(folder)


def test_zip_bomb_member_is_refused_before_it_is_read(case, tmp_path):
    zip_bomb(tmp_path / "bomb.zip", mib=80, extra={"ok.jpg": image_bytes(1)})
    assert (tmp_path / "bomb.zip").stat().st_size < 1 << 20
    stats = ingest_snapshots(case, [tmp_path / "bomb.zip"])
    assert frames(case) == ["ok"] and stats.skipped == 1
    (bomb,) = problems(case, "member_too_large")
    assert "bomb.jpg" in bomb["message"] and "zip bomb" in bomb["message"]


def test_archive_that_expands_past_the_ratio_cap_is_refused_with_a_clear_error(case, tmp_path):
    ingest_snapshots(case, [write_zip(tmp_path / "good.zip", {"g.jpg": image_bytes(1)})])
    many = [(f"m{i:03d}.bmp", bytes(1 << 20), None) for i in range(100)]  # each under the floor, 100 MiB in all
    zip_with(tmp_path / "many.zip", many)
    with pytest.raises(InputError, match=r"many.zip: content would expand to 100 MiB, \d+ times .*decompression bomb"):
        ingest_snapshots(case, [tmp_path / "many.zip"])
    (tmp_path / "bomb.tar.gz").write_bytes(_tar_gz_bomb(80))  # one member of 80 MiB of zeros
    with pytest.raises(InputError, match="bomb.tar.gz: .*decompression bomb"):
        ingest_snapshots(case, [tmp_path / "bomb.tar.gz"])
    assert frames(case) == ["g"] and case.count("inputs") == 1  # what came before is kept


def _tar_gz_bomb(mib: int) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        info = tarfile.TarInfo("zeros.jpg")
        info.size = mib << 20
        archive.addfile(info, io.BytesIO(bytes(info.size)))
    return gzip.compress(raw.getvalue(), 6)


def test_total_size_cap(case, tmp_path):
    limits = archives.ArchiveLimits(max_total_bytes=2 << 20)
    write_tar(tmp_path / "big.tar", {f"i{i}.bmp": image_bytes(i, "BMP", size=(640, 360)) for i in range(40)}, "w")
    with pytest.raises(InputError, match="big.tar: content expands past 2 MiB"):
        list(archives.iter_members(tmp_path / "big.tar", limits=limits))
    small = archives.ArchiveLimits(max_member_bytes=1000)
    (skipped,) = [m for m in archives.iter_members(tmp_path / "big.tar", limits=small) if m.name == "i1.bmp"]
    assert skipped.problem == "member_too_large"


@pytest.mark.parametrize("kind", ["tar.gz", "tar", "tar.zst"])
def test_archive_cut_mid_member_keeps_the_members_before_it(case, tmp_path, kind):
    members = {f"s{i}.jpg": image_bytes(i) for i in range(1, 5)}
    plain = write_tar(tmp_path / "plain.tar", members, "w").read_bytes()
    if kind == "tar.gz":
        whole = gzip.compress(plain)
    elif kind == "tar.zst":  # written in small blocks, as a streaming exporter flushes them
        stream = zstandard.ZstdCompressor().compressobj()
        whole = b"".join(stream.compress(plain[i : i + 4096]) + stream.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
                         for i in range(0, len(plain), 4096)) + stream.flush()
    else:
        whole = plain
    cut_at = int(len(whole) * 0.62)  # inside the third image
    (tmp_path / f"cut.{kind}").write_bytes(whole[:cut_at])
    stats = ingest_snapshots(case, [tmp_path / f"cut.{kind}"])
    assert frames(case) == ["s1", "s2"] and stats.items == 2
    (cut,) = problems(case, "truncated_archive")
    assert f"cut.{kind}" in cut["message"] and "members before it were kept" in cut["message"]
    assert case.db.execute("select status from inputs").fetchone()[0] == "complete"
    assert fingerprint_case(case, workers=1).ok == 2
    assert ingest_snapshots(case, [tmp_path / f"cut.{kind}"]).new_files == 0


def test_zip_with_corrupt_central_directory_or_damaged_members(case, tmp_path):
    corrupt_central_directory(write_zip(tmp_path / "cd.zip", {"a.jpg": image_bytes(1), "b.jpg": image_bytes(2)}))
    with pytest.raises(InputError, match="cd.zip: .*central directory"):
        ingest_snapshots(case, [tmp_path / "cd.zip"])
    whole = write_zip(tmp_path / "eocd.zip", {"a.jpg": image_bytes(1)}).read_bytes()
    (tmp_path / "eocd.zip").write_bytes(whole[:-22])  # end-of-central-directory record gone
    with pytest.raises(InputError, match="eocd.zip: a zip archive whose central directory is missing or corrupt"):
        ingest_snapshots(case, [tmp_path / "eocd.zip"])
    # a bad CRC or an encrypted entry costs that entry only
    data = bytearray(write_zip(tmp_path / "crc.zip", {"a.jpg": image_bytes(1), "b.jpg": image_bytes(2)}).read_bytes())
    first = data.find(b"PK\x03\x04")
    data[data.find(b"PK\x01\x02") + 16] ^= 0xFF  # the first entry's CRC in the central directory
    data[first + 14] ^= 0xFF  # and in its local header
    (tmp_path / "crc.zip").write_bytes(bytes(data))
    flag_encrypted(write_zip(tmp_path / "enc.zip", {"e.jpg": image_bytes(3)}))
    stats = ingest_snapshots(case, [tmp_path / "crc.zip", tmp_path / "enc.zip"])
    assert frames(case) == ["b"] and stats.skipped == 2
    reasons = [p["message"] for p in problems(case, "unreadable_member")]
    assert any("a.jpg" in r and "CRC" in r for r in reasons) and any("e.jpg" in r and "encrypted" in r for r in reasons)


def test_an_archive_inside_an_archive_is_named_not_opened(case, tmp_path):
    inner_zip = write_zip(tmp_path / "inner.zip", {"x.jpg": image_bytes(1)}).read_bytes()
    inner_tgz = write_tar(tmp_path / "inner.tgz", {"y.jpg": image_bytes(2)}).read_bytes()
    write_tar(tmp_path / "outer.tar.gz", {"inner.zip": inner_zip, "inner.tgz": inner_tgz, "top.jpg": image_bytes(3),
                                          "disguised.jpg": inner_zip})
    stats = ingest_snapshots(case, [tmp_path / "outer.tar.gz"])
    assert frames(case) == ["disguised", "top"] and stats.skipped == 2
    messages = [p["message"] for p in problems(case, "not_an_image")]
    assert len(messages) == 3 and all("nested archives are not opened" in m for m in messages)
    fingerprint_case(case, workers=1)
    assert case.db.execute("select status from fingerprints where frame_id = 's:disguised'").fetchone()[0] == "undecodable"


def test_extensions_that_lie(case, tmp_path):
    write_zip(tmp_path / "really-a-zip.tar.gz", {"z.jpg": image_bytes(1)})
    write_tar(tmp_path / "really-a-tar.zip", {"t.jpg": image_bytes(2, "PNG")}, "w")  # a PNG named .jpg too
    stats = ingest_snapshots(case, [tmp_path / "really-a-zip.tar.gz", tmp_path / "really-a-tar.zip"])
    assert stats.items == 2 and frames(case) == ["t", "z"]
    fingerprint_case(case, workers=1)
    assert case.db.execute("select format, status from fingerprints where frame_id = 's:t'").fetchone() == ("png", "ok")
    (tmp_path / "text.tar.gz").write_text("hello, I am text")
    with pytest.raises(InputError, match="text.tar.gz: not a snapshot archive"):
        ingest_snapshots(case, [tmp_path / "text.tar.gz"])
    (tmp_path / "gz-not-tar.tar.gz").write_bytes(gzip.compress(b"plain text, no tar header " * 40))
    with pytest.raises(InputError, match="gz-not-tar.tar.gz: unreadable tar archive"):
        ingest_snapshots(case, [tmp_path / "gz-not-tar.tar.gz"])


def test_a_snapshot_folder_holding_the_case_file_does_not_ingest_it(tmp_path):
    folder = tmp_path / "snaps"
    folder.mkdir()
    for i in range(1, 4):
        (folder / f"s{i}.jpg").write_bytes(image_bytes(i))
    with Case(folder / "case.db") as c:
        first = ingest_snapshots(c, [folder])
        c.db.execute("insert into meta values ('touch', 'x')")  # the case (and its WAL) changes
        c.db.conn.commit()
        again = ingest_snapshots(c, [folder])
        assert (first.items, again.new_files) == (3, 0)
        assert c.count("problems") == 0 and frames(c) == ["s1", "s2", "s3"]


def test_manifest_from_hostile_archive_is_bounded(case, tmp_path):
    manifest = b"\n".join([b"{not json", json.dumps({"path": ["x"]}).encode(), b"\xff\xfe",
                           json.dumps({"path": "../a.jpg", "snapshot": "mapped"}).encode()])
    write_tar(tmp_path / "m.tar", {"manifest.jsonl": manifest, "../a.jpg": image_bytes(1)}, "w")
    stats = ingest_snapshots(case, [tmp_path / "m.tar"])
    assert frames(case) == ["mapped"] and stats.skipped == 3


def test_dir_member_modes_stay_private(case, tmp_path):
    """Ingest never copies members anywhere: the case folder holds the case file and nothing else."""
    write_tar(tmp_path / "x.tar", {"a.jpg": image_bytes(1)}, "w")
    ingest_snapshots(case, [tmp_path / "x.tar"])
    names = sorted(p.name for p in case.path.parent.iterdir())
    assert all(n.startswith("case.db") for n in names), names
    assert stat.S_IMODE(case.path.stat().st_mode) == 0o600


def test_zip_entry_with_an_empty_name_found_by_fuzzing(case, tmp_path):
    """atheris found zipfile's ZipInfo.is_dir raising IndexError on an empty name (exit 70)."""
    path = zip_with(tmp_path / "noname.zip", [("ok.jpg", image_bytes(1), None), ("x", image_bytes(2), None)])
    data = bytearray(path.read_bytes())
    central = data.find(b"PK\x01\x02", data.find(b"PK\x01\x02") + 4)  # the second entry's central header
    assert data[central + 28] == 1  # its name length: one byte
    data[central + 28] = 0
    data[central + 46 : central + 47] = b""  # drop the name
    end = data.find(b"PK\x05\x06")
    size = int.from_bytes(data[end + 12 : end + 16], "little")
    data[end + 12 : end + 16] = (size - 1).to_bytes(4, "little")  # the central directory is a byte shorter
    path.write_bytes(bytes(data))
    stats = ingest_snapshots(case, [path])
    assert frames(case) == ["ok"] and stats.skipped == 1
    assert "empty name" in problems(case, "unreadable_member")[0]["message"]


def test_zip_claiming_to_span_disks_found_by_fuzzing(case, tmp_path):
    """atheris found zipfile.is_zipfile raising BadZipFile (exit 70) on a zip64 locator naming
    a second disk; it is an input error like any unreadable zip."""
    import struct

    data = write_zip(tmp_path / "disks.zip", {"a.jpg": image_bytes(1)}).read_bytes()
    end = data.rfind(b"PK\x05\x06")
    locator = b"PK\x06\x07" + struct.pack("<LQL", 0, 0, 2)  # zip64 locator: two disks
    (tmp_path / "disks.zip").write_bytes(data[:end] + locator + data[end:])
    with pytest.raises(InputError, match="disks.zip: a zip archive camleak cannot read .*multiple disks"):
        ingest_snapshots(case, [tmp_path / "disks.zip"])


def test_loose_files_beside_archives_are_reported_not_silently_dropped(case, tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    write_tar(folder / "served.tar.gz", {"a.jpg": image_bytes(1)})
    (folder / "loose.jpg").write_bytes(image_bytes(2))
    (folder / ".DS_Store").write_bytes(b"junk")  # hidden files are nobody's evidence
    for _ in range(2):  # a rerun says it once, so the report stays the same
        ingest_snapshots(case, [folder])
    assert frames(case) == ["a"]
    (note,) = problems(case, "file_not_read")
    assert "loose.jpg" in note["message"] and "1 other file(s)" in note["message"]
