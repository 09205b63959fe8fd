"""Look at inputs before triaging them: what camleak would read, and what it could not use.

`inspect_logs` tells, per log file, the export format detected, the field map in effect, how
many lines are usable, why the others are not, and a few events in canonical form.
`inspect_snapshots` tells, per archive, the image formats, sizes, truncated and undecodable
frames, and a few snapshot keys. Both only read: no case file, nothing written (a remote file
is fetched into a temporary folder that is removed afterwards).
"""

from __future__ import annotations

import io
import tempfile
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Iterator

from . import archives, ingest, logformats
from .errors import InputError
from .remote import is_remote

SAMPLE_EVENTS = 3
SAMPLE_KEYS = 5
STORE_RECORDS = 1000  # a log store is inspected on its first records only
STORE_PAGES = 20


@dataclass
class LogFileReport:
    source: str
    format: str | None = None
    title: str | None = None
    decided: str | None = None
    field_map: dict[str, str] = field(default_factory=dict)
    usable: int = 0
    unusable: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None  # why triage would refuse the file

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class SnapshotReport:
    source: str
    members: int = 0
    images: int = 0
    bytes: int = 0
    formats: dict[str, int] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)  # "640x360" -> frames
    truncated: int = 0
    undecodable: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    sample_keys: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# ---------------------------------------------------------------------------------------
def _local(sources: Iterable[str | Path], stack: ExitStack, role: str) -> Iterator[tuple[str, Path | None, str | None]]:
    """(label, local path or None, log-store spec or None) for each source; remote files are
    fetched into a temporary folder that `stack` removes."""
    for src in sources:
        text = str(src)
        if not is_remote(text):
            yield text, Path(text), None
            continue
        from .remote.spec import parse_spec
        spec = parse_spec(text)
        if spec.kind not in ("http", "https"):
            yield spec.label, None, text
            continue
        from .remote import net
        from .remote.download import download
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="camleak-inspect-")))
        url, auth, headers = net.auth_for(spec.url)
        from dataclasses import replace
        with net.client(net.RetryPolicy(), auth, headers) as http:
            got = download(http, replace(spec, url=url), folder)
        yield spec.label, got.path, None


def inspect_logs(sources: Iterable[str | Path], field_map: dict[str, str] | None = None,
                 log_format: str = "auto") -> list[LogFileReport]:
    """Per log file: detected format, field map, usable and unusable lines, sample events."""
    reports: list[LogFileReport] = []
    with ExitStack() as stack:
        for label, path, store in _local(sources, stack, "logs"):
            if store is not None:
                reports.append(_inspect_store(store, field_map or {}, log_format))
                continue
            assert path is not None
            for file in ingest.expand([path], what="delivery log"):
                reports.append(_inspect_log_file(file, label if file == path else str(file), field_map or {}, log_format))
    return reports


def _inspect_log_file(path: Path, label: str, field_map: dict[str, str], log_format: str) -> LogFileReport:
    report = LogFileReport(label)
    try:
        reading = ingest.open_log_file(path, field_map, log_format, strict=False)
    except InputError as exc:
        report.error = str(exc)
        return report
    _fill(report, reading, label)
    return report


def _fill(report: LogFileReport, reading: logformats.Reading, label: str) -> None:
    det = reading.detection
    report.format, report.title, report.decided, report.field_map = det.profile.name, det.profile.title, det.decided, det.field_map
    reasons: Counter[str] = Counter()
    missing = 0
    failed: list[dict[str, Any]] = []
    try:
        for item in reading.lines:
            if item.event is None:
                report.unusable += 1
                reason = (item.error or "unusable").split(" (")[0]
                reasons[reason] += 1
                if reason.startswith("missing field"):
                    missing += 1
                    if item.record is not None and len(failed) < logformats.SAMPLE:
                        failed.append(item.record)
                continue
            report.usable += 1
            if len(report.samples) < SAMPLE_EVENTS:
                report.samples.append({k: item.event.get(k) for k in logformats.CANONICAL_FIELDS})
    except (OSError, EOFError) as exc:
        reasons[f"stream ended early ({exc})"] += 1
    report.reasons = dict(reasons.most_common())
    if missing * 2 > report.usable + report.unusable or (det.sampled and det.usable < logformats.USABLE_SHARE * det.sampled):
        late = missing * 2 > report.usable + report.unusable and det.usable >= logformats.USABLE_SHARE * det.sampled
        report.error = reading.refusal(label, failed if late else None, report.usable + report.unusable, missing)


def _inspect_store(source: str, field_map: dict[str, str], log_format: str) -> LogFileReport:
    """The first pages of a log store (up to STORE_RECORDS records), read as pull would read them."""
    from .logparse import RawRecord
    from .remote import net
    from .remote.pull import STORE_PROFILES, STORES, PullOptions, _client_for
    from .remote.spec import parse_spec
    spec = parse_spec(source)
    spec_clean, http = _client_for(spec, PullOptions())
    store = STORES[spec.kind](spec_clean, http, net.RetryPolicy(), net.Counter())
    store.label = spec.label
    report = LogFileReport(spec.label)
    got: list[Any] = []
    try:
        for number, page in enumerate(store.pages(None)):
            got.extend(page.records)
            if len(got) >= STORE_RECORDS or number >= STORE_PAGES:
                break
    finally:
        store.close()
        http.close()
    records = [RawRecord(i, record=r) if isinstance(r, dict) else RawRecord(i, error="not a JSON object", raw=str(r)[:300])
               for i, r in enumerate(got[:STORE_RECORDS], 1)]
    implied = STORE_PROFILES.get(spec.kind) if log_format == "auto" else None
    detection, sample = logformats.detect(records[: logformats.SAMPLE], log_format, field_map, implied, unwrapped=True)
    usage = logformats.logparse.MapUsage()
    reading = logformats.Reading(detection, logformats._events(detection, iter(records), usage), usage, sample)
    _fill(report, reading, spec.label)
    return report


# ---------------------------------------------------------------------------------------
def inspect_snapshots(sources: Iterable[str | Path]) -> list[SnapshotReport]:
    """Per snapshot archive: image formats, sizes, truncated and undecodable frames, keys."""
    reports: list[SnapshotReport] = []
    with ExitStack() as stack:
        for label, path, store in _local(sources, stack, "snapshots"):
            if store is not None:
                reports.append(SnapshotReport(label, error="a log store holds no snapshots"))
                continue
            assert path is not None
            try:
                paths, _ = ingest._archive_sources([path], "snapshot archive")
            except InputError as exc:
                reports.append(SnapshotReport(label, error=str(exc)))
                continue
            for archive in paths:
                reports.append(_inspect_archive(archive, label if archive == path else str(archive)))
    return reports


def _inspect_archive(path: Path, label: str) -> SnapshotReport:
    from PIL import Image
    from . import imageguard
    report = SnapshotReport(label)
    formats: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    manifest: dict[str, dict] = {}
    try:
        for member in archives.iter_members(path):
            report.members += 1
            if member.skipped:
                skipped[member.problem or "skipped"] += 1
                continue
            if archives.is_manifest(member.name):
                rows, _ = archives.parse_manifest(member.data, f"{path}!{member.name}")
                manifest.update(rows)
                continue
            try:
                data = member.data
            except OSError:
                skipped["unreadable_member"] += 1
                continue
            kind = archives.image_kind(data)
            if kind is None:
                if PurePosixPath(member.name).suffix.lower() in archives.IMAGE_SUFFIXES:
                    report.undecodable += 1
                    report.images += 1
                else:
                    skipped["not_an_image"] += 1
                continue
            report.images += 1
            report.bytes += len(data)
            formats[kind] += 1
            if len(report.sample_keys) < SAMPLE_KEYS:
                report.sample_keys.append(member.name)
            status = _decode_status(data, Image, imageguard)
            if status == "undecodable":
                report.undecodable += 1
            else:
                if status == "truncated":
                    report.truncated += 1
                sizes[_size(data, Image)] += 1
    except InputError as exc:
        report.error = str(exc)
    keys = []
    for name in report.sample_keys:  # the snapshot key, as ingest gives it
        row = archives.manifest_lookup(manifest, name) if manifest else None
        keys.append(str(row["snapshot"]) if row and row.get("snapshot") else archives.member_key(name))
    report.sample_keys = keys
    report.formats, report.sizes, report.skipped = dict(formats.most_common()), dict(sizes.most_common(5)), dict(skipped)
    return report


def _size(data: bytes, Image: Any) -> str:
    try:
        with Image.open(io.BytesIO(data)) as im:
            return f"{im.width}x{im.height}"
    except Exception:  # noqa: BLE001 - a header Pillow cannot read: size unknown
        return "?"


def _decode_status(data: bytes, Image: Any, imageguard: Any) -> str:
    """'ok', 'truncated' (decodes only in part) or 'undecodable', as the fingerprint stage
    would find it; a header past the pixel limit is undecodable (a bomb)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > imageguard.MAX_PIXELS:
                return "undecodable"
            im.draft("L", (64, 64))
            im.load()
        return "ok"
    except OSError as exc:
        if "truncated" in str(exc).lower() or "broken data stream" in str(exc).lower():
            return "truncated"
        return "undecodable"
    except Exception:  # noqa: BLE001 - hostile images fail in many ways; all mean the same here
        return "undecodable"
