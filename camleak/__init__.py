"""camleak: find which accounts received which cameras' snapshots, from the pixels.

The library API mirrors the pipeline stages; the CLI (`camleak.cli`) is a thin layer over it.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("camleak")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+source"

REPORT_SCHEMA = "camleak.report/1"
