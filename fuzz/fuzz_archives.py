#!/usr/bin/env python3
"""Coverage-guided fuzzing of the snapshot-archive reader with atheris.

    pip install atheris && python fuzz/seeds.py
    python fuzz/fuzz_archives.py fuzz/corpus/archives -max_total_time=300 -rss_limit_mb=2048 -timeout=20

Each input is written to a temporary file under one of the archive names camleak accepts; the
reader must either list members (names storable as text, bytes for every member it read) or
raise InputError naming the file. Anything else is a finding. Outcomes are tallied in
fuzz/fuzz_archives-tally.txt as the run goes.
"""

from __future__ import annotations

import collections
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from camleak import archives
    from camleak.errors import InputError

# Small caps so the fuzzer reaches the limit paths without gigabytes of output.
LIMITS = archives.ArchiveLimits(max_member_bytes=4 << 20, max_total_bytes=16 << 20, max_ratio=100, ratio_floor=1 << 20)
NAMES = ["x.tar", "x.tar.gz", "x.tgz", "x.tar.zst", "x.zip"]
WORK = Path(tempfile.mkdtemp(prefix="camleak-fuzz-"))
outcomes: collections.Counter = collections.Counter()
inputs = 0


def test_one_input(data: bytes) -> None:
    global inputs
    inputs += 1
    if inputs & (inputs - 1) == 0 or inputs % 5000 == 0:
        _report()
    if not data:
        return
    name = NAMES[data[0] % len(NAMES)]
    path = WORK / name
    path.write_bytes(data[1:])
    try:
        for member in archives.iter_members(path, limits=LIMITS):
            member.name.encode("utf-8")
            if member.skipped:
                outcomes[f"member skipped: {member.problem}"] += 1
            else:
                assert isinstance(member.data, bytes)
                outcomes["member read"] += 1
    except InputError as exc:
        assert str(path) in str(exc), exc
        outcomes[f"input error: {str(exc).split(': ', 1)[1][:40]}"] += 1


TALLY = Path(__file__).with_name("fuzz_archives-tally.txt")


def _report() -> None:
    """Written as the run goes (libFuzzer ends the process without Python's exit handlers)."""
    lines = [f"fuzz_archives: {inputs} inputs; outcomes:"]
    lines += [f"  {count:8d}  {item}" for item, count in outcomes.most_common(40)]
    TALLY.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
