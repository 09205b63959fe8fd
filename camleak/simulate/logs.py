"""The three overlapping log exports (canonical JSON lines in gzip, Cloud Logging-shaped lines in
zstd, CSV with epoch times), each with a few malformed lines whose places the truth records.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import numpy as np
import zstandard

from .params import _APP_LOG, _ASSISTANT_LOG, _CANONICAL, _EXPORT_OF, _WEB_LOG, _ms_to_dt, _rfc3339_ms


def _assistant_ts(ms: int, rng: np.random.Generator) -> str:
    dt = _ms_to_dt(ms)
    if rng.random() < 0.5:
        return f"{dt:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}{int(rng.integers(0, 1000)):03d}+00:00"
    return f"{dt:%Y-%m-%dT%H:%M:%S}+00:00"


def _insert_malformed(lines: list[str], bad: list[tuple[str, str]], rng: np.random.Generator,
                      first: int) -> list[tuple[str, str | None]]:
    """Insert malformed lines at random positions (never before line `first`)."""
    out: list[tuple[str, str | None]] = [(ln, None) for ln in lines]
    for text, kind in bad:
        pos = int(rng.integers(first, len(out) + 1))
        out.insert(pos, (text, kind))
    return out


def _write_logs(root: Path, events: list[dict], rng: np.random.Generator) -> tuple[list[dict], int, int]:
    """Split events into three overlapping exports; returns malformed lines, lines written, duplicates."""
    files: dict[str, list[dict]] = {_APP_LOG: [], _ASSISTANT_LOG: [], _WEB_LOG: []}
    dup = 0
    names = list(files)
    for ev in events:
        primary = _EXPORT_OF[ev["integration"]]
        files[primary].append(ev)
        if rng.random() < 0.1:
            alt = [n for n in names if n != primary]
            files[alt[int(rng.integers(2))]].append(ev)
            dup += 1
    for evs in files.values():
        evs.sort(key=lambda e: (e["ts_ms"], e["request_id"], e["event"]))
    malformed: list[dict] = []
    written = 0

    # app export: canonical JSON lines, gzip
    app = [json.dumps({"ts": _rfc3339_ms(e["ts_ms"]), **{k: e[k] for k in _CANONICAL[1:]}}, separators=(",", ":"))
           for e in files[_APP_LOG]]
    written += len(app)
    bad = []
    if app:
        src = app[int(rng.integers(len(app)))]
        bad.append((src[: int(len(src) * rng.uniform(0.3, 0.8))], "truncated_json"))
    bad.append(("<html><body><h1>502 Bad Gateway</h1></body></html>", "garbage"))
    rows = _insert_malformed(app, bad, rng, 1)
    data = "".join(t + "\n" for t, _ in rows).encode()
    with open(root / _APP_LOG, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(data)
    malformed += [{"file": _APP_LOG, "line": i + 1, "kind": k} for i, (_, k) in enumerate(rows) if k]

    # assistant export: Cloud Logging-shaped nested lines, zstd
    asst = []
    for e in files[_ASSISTANT_LOG]:
        payload = {"agentUserId": e["account_id"], "deviceId": e["device_id"], "eventType": e["event"],
                   "integration": e["integration"], "requestId": e["request_id"]}
        if e["snapshot"] is not None:
            payload["snapshotKey"] = e["snapshot"]
        asst.append(json.dumps({"timestamp": _assistant_ts(e["ts_ms"], rng), "severity": "INFO",
                                "logName": "projects/camcloud-prod/logs/assistant-bridge",
                                "jsonPayload": payload}, separators=(",", ":")))
    written += len(asst)
    bad = []
    if asst:
        src = asst[int(rng.integers(len(asst)))]
        bad.append((src[: int(len(src) * rng.uniform(0.3, 0.8))], "truncated_json"))
    if rng.random() < 0.5:
        bad.append(("\x00\x00\x00\x00#partial-flush", "garbage"))
    rows = _insert_malformed(asst, bad, rng, 1)
    data = "".join(t + "\n" for t, _ in rows).encode()
    (root / _ASSISTANT_LOG).write_bytes(zstandard.ZstdCompressor(level=3).compress(data))
    malformed += [{"file": _ASSISTANT_LOG, "line": i + 1, "kind": k} for i, (_, k) in enumerate(rows) if k]

    # web export: CSV, ts as epoch ms or epoch seconds
    web = []
    for e in files[_WEB_LOG]:
        ts = e["ts_ms"] if rng.random() < 0.5 else e["ts_ms"] // 1000
        web.append([str(ts), e["account_id"], e["device_id"], e["snapshot"] or "", e["event"],
                    e["integration"], e["request_id"]])
    written += len(web)

    def csv_line(row: list[str]) -> str:
        s = io.StringIO()
        csv.writer(s, lineterminator="").writerow(row)
        return s.getvalue()

    web_lines = [csv_line(r) for r in web]
    bad = []
    for _ in range(1 + int(rng.random() < 0.5)):
        if web:
            bad.append((csv_line(web[int(rng.integers(len(web)))][:-1]), "missing_column"))
    rows = _insert_malformed(web_lines, bad, rng, 0)
    text = csv_line(list(_CANONICAL)) + "\n" + "".join(t + "\n" for t, _ in rows)
    (root / _WEB_LOG).write_bytes(text.encode())
    malformed += [{"file": _WEB_LOG, "line": i + 2, "kind": k} for i, (_, k) in enumerate(rows) if k]
    return malformed, written, dup
