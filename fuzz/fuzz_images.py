#!/usr/bin/env python3
"""Coverage-guided fuzzing of the image decode path (fingerprint + imageguard) with atheris.

    pip install atheris && python fuzz/seeds.py
    fuzz/fuzz_images.py fuzz/corpus/images -max_total_time=300 -rss_limit_mb=2048 -timeout=20 \
        -fork=1 -ignore_ooms=1

Every input must give a fingerprint row with a known status, and a reason whenever it is not
'ok'. Reasons are tallied in fuzz/fuzz_images-tally.txt as the run goes: a reason naming a Python error that is not a
decoder's (AttributeError, TypeError, ...) points at a bug in camleak rather than in the input.
"""

from __future__ import annotations

import collections
import re
import sys
from pathlib import Path

import atheris

# An instrumented process grows by about 0.25 MB per input (atheris bookkeeping: the same inputs
# run uninstrumented stay flat at 160-200 MB), hence fork mode with -ignore_ooms in the command
# above, so libFuzzer restarts the worker instead of ending the run.
with atheris.instrument_imports():
    from camleak.fingerprint import fingerprint_one

STATUSES = {"ok", "uninformative", "truncated", "undecodable"}
reasons: collections.Counter = collections.Counter()
inputs = 0


def test_one_input(data: bytes) -> None:
    global inputs
    inputs += 1
    if inputs & (inputs - 1) == 0 or inputs % 5000 == 0:
        _report()
    row = fingerprint_one("fuzz", data)
    assert row["status"] in STATUSES, row
    if row["status"] != "ok":
        assert row["reason"], row
        reasons[re.sub(r"[\d.]+", "N", row["reason"])[:70]] += 1
    for key in ("phash", "dhash", "band_phash", "band_dhash"):
        assert row[key] is None or re.fullmatch(r"[0-9a-f]+", row[key]), row


TALLY = Path(__file__).with_name("fuzz_images-tally.txt")


def _report() -> None:
    """Written as the run goes (libFuzzer ends the process without Python's exit handlers)."""
    lines = [f"fuzz_images: {inputs} inputs; reasons for frames not used:"]
    lines += [f"  {count:8d}  {item}" for item, count in reasons.most_common(40)]
    TALLY.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
