"""The simulator is the yardstick for every other stage, so its truth must be exact,
reproducible and consistent with the files it writes."""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import tarfile
import zipfile
from pathlib import Path

import imagehash
import pytest
import zstandard
from PIL import Image, ImageFile, ImageStat

from camleak.simulate import ASSISTANT_FIELD_MAP, Incident, SimParams, generate_incident, render_frame

# Tiny, but spanning dusk (16:00-22:00) so both day and infrared frames exist,
# with a high bug rate so leaks surely exist.
PARAMS = SimParams(seed=5, homes=6, hours=6, bug_rate=0.6, start="2026-11-20T16:00:00Z")
CANONICAL = ("ts", "account_id", "device_id", "snapshot", "event", "integration", "request_id")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Incident, Incident]:
    root = tmp_path_factory.mktemp("sim")
    return generate_incident(root / "a", PARAMS, workers=1), generate_incident(root / "b", PARAMS, workers=2)


@pytest.fixture(scope="module")
def inc(runs) -> Incident:
    return runs[1]


@pytest.fixture(scope="module")
def truth(inc) -> dict:
    return json.loads(inc.truth.read_text())


@pytest.fixture(scope="module")
def images(inc) -> dict[str, bytes]:
    """Every served snapshot's bytes, by key, read straight from both archives."""
    out: dict[str, bytes] = {}
    with tarfile.open(inc.snapshots[0]) as tf:
        for m in tf.getmembers():
            key = Path(m.name).stem
            assert key not in out
            out[key] = tf.extractfile(m).read()
    with zipfile.ZipFile(inc.snapshots[1]) as zf:
        manifest = [json.loads(line) for line in zf.read("manifest.jsonl").decode().splitlines()]
        assert {m["path"] for m in manifest} == set(zf.namelist()) - {"manifest.jsonl"}
        for m in manifest:
            assert m["snapshot"] not in out, "a snapshot key sits in both archives"
            out[m["snapshot"]] = zf.read(m["path"])
    return out


def _relative_files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def _home_access(devices_csv: Path) -> tuple[dict[str, str], dict[str, set[str]]]:
    """device -> home, and home -> accounts with access (home scope), from devices.csv."""
    device_home: dict[str, str] = {}
    members: dict[str, set[str]] = {}
    with open(devices_csv, newline="") as fh:
        for row in csv.DictReader(fh):
            device_home[row["device_id"]] = row["home_id"]
            accts = members.setdefault(row["home_id"], set())
            accts.add(row["owner_account"])
            accts.update(a for a in row["shared_accounts"].split(";") if a)
    return device_home, members


def _dig(obj: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def _read_logs(inc: Incident) -> tuple[list[dict], list[tuple[str, int]]]:
    """Parse the three exports the way the tool is meant to: field map first, canonical fallback."""
    events: list[dict] = []
    bad: list[tuple[str, int]] = []
    for path in inc.logs:
        rel = str(path.relative_to(inc.root))
        raw = path.read_bytes()
        if path.name.endswith(".gz"):
            raw = gzip.decompress(raw)
        elif path.name.endswith(".zst"):
            raw = zstandard.ZstdDecompressor().decompress(raw)
        text = raw.decode()
        if path.suffix == ".csv":
            lines = text.splitlines()
            header = next(csv.reader([lines[0]]))
            assert tuple(header) == CANONICAL
            for n, line in enumerate(lines[1:], start=2):
                row = next(csv.reader([line]))
                if len(row) != len(header):
                    bad.append((rel, n))
                    continue
                events.append(dict(zip(header, row)))
            continue
        for n, line in enumerate(text.splitlines(), start=1):
            try:
                obj = json.loads(line)
            except ValueError:
                bad.append((rel, n))
                continue
            ev = {}
            for name in CANONICAL:
                mapped = _dig(obj, inc.field_map[name])
                ev[name] = mapped if mapped is not None else obj.get(name)
            events.append(ev)
    return events, bad


def test_same_seed_same_bytes_whatever_the_workers(runs):
    a, b = runs
    files = _relative_files(a.root)
    assert files == _relative_files(b.root)
    for rel in files:
        assert (a.root / rel).read_bytes() == (b.root / rel).read_bytes(), rel
    assert a.counts == b.counts


def test_other_seed_other_incident(tmp_path, truth):
    other = generate_incident(tmp_path / "c", SimParams(seed=6, homes=3, hours=2, bug_rate=0.6, references=False))
    assert other.references == []
    assert json.loads(other.truth.read_text())["snapshots"].keys().isdisjoint(truth["snapshots"])


def test_incident_layout_and_counts(inc, truth):
    assert inc.field_map == ASSISTANT_FIELD_MAP == truth["field_map"]
    assert [p.name for p in inc.logs] == ["app-events.jsonl.gz", "assistant-events.jsonl.zst", "web-events.csv"]
    assert [p.name for p in inc.snapshots] == ["served-1.tar.gz", "served-2.zip"]
    assert [p.name for p in inc.references] == ["refs.tar"]
    assert all(p.is_file() for p in [inc.devices, inc.truth, *inc.logs, *inc.snapshots, *inc.references])
    c = inc.counts
    assert c == truth["counts"]
    assert c["snapshots"] == len(truth["snapshots"]) > 50
    assert c["leaked_deliveries"] > 0 and c["exposure_pairs"] == len(truth["exposure_pairs"]) > 0
    assert c["home_mixups"] >= 1 and 3 <= c["malformed_lines"] == len(truth["malformed_lines"]) <= 6
    assert truth["params"]["seed"] == PARAMS.seed


def test_exposures_are_real_leaks_under_home_scope(inc, truth):
    device_home, members = _home_access(inc.devices)
    for account, device in truth["exposure_pairs"]:
        assert account not in members[device_home[device]]
    assert set(map(tuple, truth["exposure_pairs_informative"])) <= set(map(tuple, truth["exposure_pairs"]))
    assert set(map(tuple, truth["viewed_pairs"])) <= set(map(tuple, truth["exposure_pairs"]))
    pairs = set()
    start, end = truth["bug_window"]
    for snap in truth["snapshots"].values():
        own_home = snap["recipient"] in members[device_home[snap["source_device"]]]
        assert own_home == (snap["kind"] != "leak")
        assert snap["recipient"] in members[device_home[snap["requested_device"]]]
        if snap["kind"] == "leak":
            pairs.add((snap["recipient"], snap["source_device"]))
            assert start <= snap["ts"] < end
            assert snap["logged_device"] == (snap["source_device"] if snap["honest_log"] else snap["requested_device"])
    assert pairs == set(map(tuple, truth["exposure_pairs"]))


def test_home_mixups_stay_inside_one_home(inc, truth):
    device_home, members = _home_access(inc.devices)
    mixups = [s for s in truth["snapshots"].values() if s["kind"] == "home_mixup"]
    assert mixups and len(mixups) == truth["counts"]["home_mixups"]
    for s in mixups:
        assert s["source_device"] != s["requested_device"]
        assert device_home[s["source_device"]] == device_home[s["requested_device"]]
        assert s["recipient"] in members[device_home[s["source_device"]]]
    assert {(s["recipient"], s["source_device"]) for s in mixups} == set(map(tuple, truth["home_mixups"]))


def test_rarely_used_camera_leaks_to_more_accounts_than_it_has_own_requests(truth):
    victim = truth["outvoted_device"]
    dev = truth["devices"][victim]
    assert dev["rarely_used"] and dev["has_references"] and 1 <= dev["own_requests"] <= 3
    leaks = [s for s in truth["snapshots"].values() if s["source_device"] == victim and s["kind"] == "leak"]
    assert len({s["recipient"] for s in leaks}) > dev["own_requests"]


def test_every_snapshot_in_exactly_one_archive(images, truth):
    assert set(images) == set(truth["snapshots"])


def test_logs_hold_every_event_once_after_overlap(inc, truth):
    events, bad = _read_logs(inc)
    assert sorted(bad) == sorted((m["file"], m["line"]) for m in truth["malformed_lines"])
    keys = [(e["request_id"], e["event"]) for e in events]
    assert len(keys) == truth["counts"]["log_lines"]
    assert len(keys) - len(set(keys)) == truth["counts"]["duplicate_events"] > 0
    assert len(set(keys)) == truth["counts"]["events"]
    served = {e["snapshot"]: e for e in events if e["event"] == "snapshot_served"}
    assert served.keys() == truth["snapshots"].keys()
    for key, e in served.items():
        snap = truth["snapshots"][key]
        assert (e["account_id"], e["device_id"], e["integration"]) == (snap["recipient"], snap["logged_device"], snap["integration"])
    viewed = {e["snapshot"] for e in events if e["event"] == "snapshot_viewed"}
    assert viewed == {k for k, s in truth["snapshots"].items() if s["viewed"]}
    assert all(not e["snapshot"] for e in events if e["event"] == "stream_started")
    web_ts = [int(e["ts"]) for e in events if isinstance(e["ts"], str) and e["ts"].isdigit()]
    assert any(t > 10**12 for t in web_ts) and any(t < 10**11 for t in web_ts)


def test_images_decode_and_truncated_ones_only_leniently(images, truth):
    formats = set()
    saved = ImageFile.LOAD_TRUNCATED_IMAGES
    try:
        for key, data in images.items():
            snap = truth["snapshots"][key]
            ImageFile.LOAD_TRUNCATED_IMAGES = False
            img = Image.open(io.BytesIO(data))
            formats.add(img.format)
            assert list(img.size) == snap["size"]
            if not snap["truncated"]:
                img.load()
                continue
            with pytest.raises(OSError):
                img.load()
            ImageFile.LOAD_TRUNCATED_IMAGES = True
            Image.open(io.BytesIO(data)).load()
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved
    assert "JPEG" in formats
    assert any(s["truncated"] for s in truth["snapshots"].values())


def test_near_black_frames_are_dark(images, truth):
    dark = [k for k, s in truth["snapshots"].items() if not s["informative"]]
    extra = [render_frame("cam-0001", "2026-11-20T23:00:00Z", seed=PARAMS.seed, index=i, near_black=True) for i in range(3)]
    frames = [Image.open(io.BytesIO(images[k])) for k in dark] + extra
    for img in frames:
        img.load()
        assert ImageStat.Stat(img.convert("L")).mean[0] < 20
    assert all(truth["snapshots"][k]["night"] for k in dark)


def _phash(img: Image.Image) -> imagehash.ImageHash:
    g = img.convert("L")
    return imagehash.phash(g.crop((0, g.height // 10, g.width, g.height)))  # skip the timestamp


def test_same_camera_day_and_night_hash_closer_than_other_cameras(images, truth):
    ok = {k: s for k, s in truth["snapshots"].items() if s["informative"] and not s["truncated"]}
    hashes = {k: _phash(Image.open(io.BytesIO(images[k]))) for k in ok}
    same, diff = [], []
    for a, b in itertools.combinations(sorted(ok), 2):
        if ok[a]["night"] == ok[b]["night"]:
            continue
        d = hashes[a] - hashes[b]
        (same if ok[a]["source_device"] == ok[b]["source_device"] else diff).append(d)
    assert len(same) >= 20 and len(diff) >= 100
    mean_same, mean_diff = sum(same) / len(same), sum(diff) / len(diff)
    assert mean_same < 16 and mean_diff > 24 and mean_diff - mean_same > 10


def test_render_frame_separates_cameras(truth):
    cams = sorted(truth["devices"])[:6]
    day = {c: _phash(render_frame(c, "2026-11-20T12:00:00Z", seed=PARAMS.seed, index=1)) for c in cams}
    night = {c: _phash(render_frame(c, "2026-11-20T23:30:00Z", seed=PARAMS.seed, index=2, size=(320, 180)))
             for c in cams}
    same = [day[c] - night[c] for c in cams]
    diff = [day[a] - night[b] for a in cams for b in cams if a != b]
    assert sum(same) / len(same) + 10 < sum(diff) / len(diff)


def test_references_come_from_their_device(inc, truth):
    with tarfile.open(inc.references[0]) as tf:
        names = [m.name for m in tf.getmembers()]
        assert names == sorted(names, key=lambda n: (n.split("/")[1], n))
        for m in tf.getmembers():
            parts = m.name.split("/")
            assert parts[0] == "refs" and parts[2].endswith(".jpg") and truth["references"][m.name] == parts[1]
            img = Image.open(tf.extractfile(m))
            img.load()
    devices = {n.split("/")[1] for n in names}
    assert {d for d, v in truth["devices"].items() if v["rarely_used"]} <= devices
    counts = {d: sum(n.split("/")[1] == d for n in names) for d in devices}
    assert all(2 <= c <= 3 for c in counts.values())


def test_planned_cameras_distance_is_the_plain_bit_count_to_every_earlier_camera():
    # The packed signatures the plan compares a candidate with give the same distance as
    # counting differing bits against every earlier camera's day and night look, any combination.
    import numpy as np

    from camleak.simulate.plan import _Signatures

    rng = np.random.default_rng(2)
    kept, signatures = [], _Signatures()
    assert signatures.nearest(rng.random((2, 64)) < 0.5) == 64  # no earlier camera
    for _ in range(150):  # past the first doubling of its storage
        candidate = rng.random((2, 64)) < 0.5
        if kept:
            plain = int((np.array(kept)[:, :, None, :] != candidate[None, None, :, :]).sum(-1).min())
            assert signatures.nearest(candidate) == plain
        kept.append(candidate)
        signatures.append(candidate)
    near = kept[40].copy()
    near[:, :5] ^= True  # five bits from camera 40's day look and from its night look
    assert signatures.nearest(near) == 5
