"""One pass: triage reads each archive once, fingerprinting members as ingest reads them; a run
stopped part-way through an archive resumes from the batches it committed; memory is bounded
by the batch, not the archive; every run records its wall and CPU time."""

from __future__ import annotations

import json
import re
import sqlite3
import tracemalloc

import pytest

from camleak import archives, fingerprint, ingest, pipeline
from camleak.casefile import Case
from camleak.fingerprint import HashPool, fingerprint_case
from camleak.report import build_report

from conftest import jpeg, scene, write_registry, write_tar, write_zip


def inputs_of(inc) -> pipeline.TriageInputs:
    return pipeline.TriageInputs(devices=[inc.devices], logs=inc.logs, snapshots=inc.snapshots,
                                 references=inc.references, field_map=inc.field_map)


def report_of(case: Case) -> dict:
    report = build_report(case)
    report.pop("generated_at")
    return report


SETTINGS = pipeline.TriageSettings(workers=1)  # in-process, so the tests can watch the calls


@pytest.fixture(scope="module")
def one_pass_counts(tiny_incident, tmp_path_factory):
    """The counts of an uninterrupted one-pass triage."""
    with Case(tmp_path_factory.mktemp("onepass") / "case.db") as case:
        return pipeline.triage(case, inputs_of(tiny_incident), SETTINGS)


@pytest.fixture(scope="module")
def stepwise(tiny_incident, tmp_path_factory):
    """The report of the stages run one by one (ingest, then fingerprint reading the archives
    again): what triage gave before it became one pass."""
    path = tmp_path_factory.mktemp("stepwise") / "case.db"
    with Case(path) as case:
        pipeline.run_ingest(case, inputs_of(tiny_incident))
        assert case.count("fingerprints") == 0  # ingest alone hashes nothing
        pipeline.run_fingerprint(case, SETTINGS)
        pipeline.run_cluster(case, SETTINGS)
        pipeline.run_attribute(case, SETTINGS)
        return report_of(case)


def test_triage_reads_each_archive_once_and_matches_the_stepwise_report(tiny_incident, stepwise, tmp_path, monkeypatch):
    reads: dict[str, int] = {}
    real = archives.iter_members

    def counting(path, **kwargs):
        reads[str(path)] = reads.get(str(path), 0) + 1
        return real(path, **kwargs)

    monkeypatch.setattr(archives, "iter_members", counting)
    with Case(tmp_path / "case.db") as case:
        counts = pipeline.triage(case, inputs_of(tiny_incident), SETTINGS)
        assert report_of(case) == stepwise
        assert case.count("staged_fingerprints") == 0  # the staging is emptied as archives complete
        frames = case.count("frames")
    archives_read = {str(p) for p in tiny_incident.snapshots + tiny_incident.references}
    assert reads == {p: 1 for p in archives_read}
    assert counts["fingerprint"]["fingerprinted"] == 0 and counts["fingerprint"]["reused"] == frames
    assert counts["ingest"]["fingerprints"]["fingerprinted"] >= frames


def test_pool_of_two_workers_gives_the_same_report(tiny_incident, stepwise, tmp_path):
    with Case(tmp_path / "case.db") as case:
        pipeline.triage(case, inputs_of(tiny_incident), pipeline.TriageSettings(workers=2))
        assert report_of(case) == stepwise


class Stop(KeyboardInterrupt):
    """Ctrl-C at a chosen point of the pass."""


def test_stopped_mid_archive_resumes_from_its_committed_batches(tiny_incident, stepwise, one_pass_counts, tmp_path,
                                                               monkeypatch):
    path = tmp_path / "case.db"
    seen = 0

    def progress(label, total=None):
        from contextlib import nullcontext

        def advance(n):
            nonlocal seen
            seen += n
            if seen >= 3 * fingerprint.BATCH_SIZE + 3:  # past several batches, inside the first archive
                raise Stop()
        return nullcontext((advance if "snapshot" in label else (lambda n: None), lambda n: None))

    with Case(path) as case, pytest.raises(Stop):
        pipeline.triage(case, inputs_of(tiny_incident), SETTINGS, progress)
    with Case(path) as case:
        staged = case.count("staged_fingerprints")
        assert staged >= 3 * fingerprint.BATCH_SIZE  # the batches hashed before the stop are kept
        assert case.count("inputs", "kind = 'snapshots'") == 0  # frames land only with their whole archive
        assert [r["status"] for r in case.db.query("select status from runs where command = 'ingest'")] == ["interrupted"]

    hashed: list[int] = []
    real = fingerprint.fingerprint_batch

    def counting(items, params=fingerprint.DEFAULT_PARAMS):
        hashed.append(len(items))
        return real(items, params)

    monkeypatch.setattr(fingerprint, "fingerprint_batch", counting)
    with Case(path) as case:
        counts = pipeline.triage(case, inputs_of(tiny_incident), SETTINGS)
        assert report_of(case) == stepwise
        assert case.count("staged_fingerprints") == 0
    members = one_pass_counts["ingest"]["fingerprints"]["fingerprinted"]
    assert counts["ingest"]["fingerprints"]["resumed"] == staged
    assert sum(hashed) == counts["ingest"]["fingerprints"]["fingerprinted"] == members - staged


def test_changed_parameters_discard_the_staging(tmp_path):
    images = {f"k{i}": jpeg(scene(i, (320, 180))) for i in range(6)}
    write_tar(tmp_path / "x.tar", {f"{k}.jpg": v for k, v in images.items()}, "w")
    other = fingerprint.FingerprintParams(min_quality=29.0)
    with Case(tmp_path / "case.db") as case:
        record = case.record_input("snapshots", tmp_path / "x.tar", "d" * 64, 1)
        with HashPool(other, 1) as pool:  # a killed run under other parameters left this staged
            stager = ingest._Stager(case, record.id, ingest.OnePass(pool))
            stager.add("k0.jpg", "0" * 64, images["k0"])
            stager.finish()
        assert case.count("staged_fingerprints") == 1
        with HashPool(workers=1) as pool:
            ingest._Stager(case, record.id, ingest.OnePass(pool))
        assert case.count("staged_fingerprints") == 0


def test_late_manifest_in_one_pass_gives_fingerprints_under_the_manifest_keys(tmp_path):
    images = {f"key-{i}": jpeg(scene(i, (320, 180))) for i in range(40)}
    members = {f"obj/{i:04d}.bin": data for i, data in enumerate(images.values())}
    members["manifest.jsonl"] = "".join(json.dumps({"path": f"obj/{i:04d}.bin", "snapshot": key}) + "\n"
                                        for i, key in enumerate(images)).encode()  # last: keys known only at the end
    write_tar(tmp_path / "m.tar.gz", members)
    with Case(tmp_path / "case.db") as case, HashPool(workers=2) as pool:
        one_pass = ingest.OnePass(pool)
        stats = ingest.ingest_snapshots(case, [tmp_path / "m.tar.gz"], one_pass=one_pass)
        assert stats.items == 40 and one_pass.hashed == 40
        rows = {r["frame_id"]: r for r in case.db.query("select * from fingerprints")}
        assert set(rows) == {f"s:{k}" for k in images}
        assert {r["status"] for r in rows.values()} == {"ok"}
        expected = fingerprint.fingerprint_one("s:key-7", images["key-7"])
        assert rows["s:key-7"]["phash"] == expected["phash"] and rows["s:key-7"]["bands"] == expected["bands"]
        # the separate fingerprint stage finds nothing left to do
        assert fingerprint_case(case, workers=1).fingerprinted == 0


def test_one_pass_keeps_the_first_of_duplicate_keys_and_only_its_fingerprint(tmp_path):
    a, b = jpeg(scene(1, (320, 180))), jpeg(scene(2, (320, 180)))
    write_zip(tmp_path / "one.zip", {"x/s1.jpg": a, "y/s1.jpg": b, "s2.jpg": b})
    write_tar(tmp_path / "two.tar", {"s1.jpg": a, "s2.jpg": a}, "w")
    with Case(tmp_path / "case.db") as case, HashPool(workers=1) as pool:
        ingest.ingest_snapshots(case, [tmp_path / "one.zip", tmp_path / "two.tar"], one_pass=ingest.OnePass(pool))
        assert case.count("frames") == 2 and case.count("fingerprints") == 2
        assert case.count("problems", "kind = 'duplicate_snapshot_key'") == 2  # y/s1 here, s2 in two.tar
        s1 = next(case.db.query("select p.phash from fingerprints p where frame_id = 's:s1'"))["phash"]
        assert s1 == fingerprint.fingerprint_one("s:s1", a)["phash"]


def test_a_refused_archive_leaves_no_staging(tmp_path):
    write_tar(tmp_path / "ok.tar", {"a.jpg": jpeg(scene(1, (320, 180)))}, "w")
    (tmp_path / "bad.tar.gz").write_bytes(b"\x1f\x8b" + b"not really gzip" * 10)
    with Case(tmp_path / "case.db") as case, HashPool(workers=1) as pool:
        with pytest.raises(Exception):
            ingest.ingest_snapshots(case, [tmp_path / "ok.tar", tmp_path / "bad.tar.gz"], one_pass=ingest.OnePass(pool))
        assert case.count("staged_fingerprints") == 0
        assert case.count("fingerprints") == 1  # the archive before it is kept, fingerprinted


def test_memory_is_bounded_by_the_batch_not_the_archive(tmp_path):
    """An archive of 96 MB is read with a few MB of member bytes alive at any time."""
    member = 256 * 1024
    count = 384
    body = b"\xff\xd8\xff\xe0" + bytes(range(256)) * (member // 256 - 1)
    members = {f"{i:04d}.jpg": body[:-8] + i.to_bytes(8, "big") for i in range(count)}  # distinct bytes
    write_tar(tmp_path / "big.tar", members, "w")
    del members
    with Case(tmp_path / "case.db") as case, HashPool(workers=1) as pool:
        one_pass = ingest.OnePass(pool)
        tracemalloc.start()
        try:
            ingest.ingest_snapshots(case, [tmp_path / "big.tar"], one_pass=one_pass)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert one_pass.hashed == count and case.count("fingerprints") == count
    archive = member * count
    assert peak < archive / 4, f"peak {peak / 2**20:.1f} MiB for a {archive / 2**20:.0f} MiB archive"


def test_hash_pool_holds_at_most_its_depth_and_keeps_order():
    frame = jpeg(scene(3, (160, 90)))
    with HashPool(workers=2, depth=3) as pool:
        done = []
        for i in range(20):
            done += pool.submit([(f"f{i}", frame)], tag=i)
            assert len(pool._in_flight) <= 3
        done += pool.drain()
    assert [tag for tag, _ in done] == list(range(20))
    assert [rows[0]["frame_id"] for _, rows in done] == [f"f{i}" for i in range(20)]


def test_runs_record_millisecond_times_wall_and_cpu_seconds(tmp_path):
    write_registry(tmp_path / "reg.csv", [{"device_id": "cam-1", "home_id": "h1", "owner_account": "a", "shared_accounts": ""}])
    with Case(tmp_path / "case.db") as case:
        with case.run("ingest", {}) as run:
            run["n"] = 1
            sum(i * i for i in range(200_000))  # some CPU to account for
        row = next(case.db.query("select * from runs"))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", row["started"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", row["ended"])
    assert row["wall_s"] is not None and row["cpu_s"] is not None and row["cpu_s"] > 0
    assert json.loads(row["counts"])["n"] == 1


def test_a_case_from_before_run_timings_opens_and_gains_them(tmp_path):
    path = tmp_path / "old.db"
    Case(path).close()
    conn = sqlite3.connect(path)
    conn.execute("alter table runs drop column wall_s")
    conn.execute("alter table runs drop column cpu_s")
    conn.commit()
    conn.close()
    with Case(path) as case:
        with case.run("cluster", {}):
            pass
        row = next(case.db.query("select wall_s, cpu_s from runs"))
    assert row["wall_s"] is not None and row["cpu_s"] is not None
