"""The docs site builds with `mkdocs build --strict`, and what must not drift does not.

The built command reference must show every command and every option of the CLI, the built
case-file page every table and column of `camleak.casefile.SCHEMA`, and the overview in
getting-started every top-level command. The build runs once per test worker, into a temp dir.
"""

from __future__ import annotations

import html
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _hooks():
    spec = importlib.util.spec_from_file_location("camleak_docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hooks = _hooks()


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(out)],
                          cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    assert "WARNING" not in proc.stderr, proc.stderr
    return out


def sections(page: str, level: int) -> dict[str, str]:
    """heading id -> the HTML from that heading to the next heading of the same level."""
    parts = re.split(rf'(<h{level} id="[^"]+")', page)
    return {re.match(r'<h\d id="([^"]+)"', parts[i]).group(1): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def missing_from_reference(page: str, tree) -> list[str]:
    """Commands and options of the CLI that the built reference page does not show."""
    found = sections(page, 2)
    missing = []
    for path, command in hooks.walk(tree):
        anchor = "-".join(path)
        if anchor not in found:
            missing.append(" ".join(path))
            continue
        text = html.unescape(found[anchor])
        for param in hooks.visible_params(command, "option"):
            for spelling in list(param.opts) + list(param.secondary_opts):
                if f"<code>{spelling}</code>" not in text:
                    missing.append(f"{' '.join(path)} {spelling}")
            if (getattr(param, "help", "") or "").split()[:3] and " ".join(param.help.split()[:3]) not in " ".join(text.split()):
                missing.append(f"{' '.join(path)} {param.opts[0]} (help text)")
        for arg in hooks.visible_params(command, "argument"):
            if f"<code>{arg.name.upper()}" not in text:
                missing.append(f"{' '.join(path)} {arg.name.upper()}")
    return missing


def test_mkdocs_build_strict_passes(site):
    for page in ("index.html", "getting-started/index.html", "attribution/index.html", "reports/index.html",
                 "remote/index.html", "playbooks/index.html", "casefile/index.html", "hostile-input/index.html",
                 "exit-codes/index.html", "benchmarks/index.html", "inputs/index.html", "reference/index.html"):
        assert (site / page).is_file(), page


def test_reference_shows_every_command_and_option(site):
    page = (site / "reference" / "index.html").read_text()
    tree = hooks.command_tree()
    assert hooks.REFERENCE_MARKER not in page
    assert missing_from_reference(page, tree) == []
    assert len(list(hooks.walk(tree))) > 20  # groups and their commands were walked


def test_a_missing_option_is_caught(site):
    """The check above can fail: drop one option from the built page and it is named."""
    page = (site / "reference" / "index.html").read_text()
    triage = sections(page, 2)["camleak-triage"]
    doctored = page.replace(triage, triage.replace("<code>--access-scope</code>", "<code>--scope</code>"))
    assert missing_from_reference(doctored, hooks.command_tree()) == ["camleak triage --access-scope"]
    without = page.replace('<h2 id="camleak-score"', '<h2 id="camleak-scores"')
    assert "camleak score" in missing_from_reference(without, hooks.command_tree())


def test_casefile_page_shows_every_table_and_column(site):
    from camleak.casefile import SCHEMA

    found = sections((site / "casefile" / "index.html").read_text(), 3)
    for table, (columns, _) in SCHEMA.items():
        assert table in found, table
        for column in columns:
            assert f"<code>{column}</code>" in found[table], f"{table}.{column}"


def test_reports_page_shows_every_key_of_the_report_schema(site):
    page = html.unescape((site / "reports" / "index.html").read_text())
    paths = [row[0] for row in hooks.report_key_paths()]
    assert {"review", "exposures[].p_wrong", "summary.expected_false_pairs"} <= set(paths)
    assert [p for p in paths if f"<code>{p}</code>" not in page] == []


def test_overview_names_every_top_level_command():
    """Getting started has the one-line-per-command overview; a new command needs its line."""
    text = (DOCS / "getting-started.md").read_text()
    for name in hooks.command_tree().commands:
        assert f"`camleak {name}" in text, name


def test_readme_is_short_and_links_into_the_docs():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    assert "pip install . && camleak demo" in readme
    assert "pip install -e '.[test]' && pytest -n 2" in readme
    for target in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / target).is_file(), target
