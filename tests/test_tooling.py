"""The habits of the project: one version, a changelog entry for it, a mypy baseline that can
only shrink."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

import convexsnn

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_version_is_defined_once():
    """pyproject.toml declares the version dynamic and reads it from convexsnn.__version__."""
    meta = _pyproject()
    assert "version" not in meta["project"]
    assert "version" in meta["project"]["dynamic"]
    assert meta["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "convexsnn.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)*", convexsnn.__version__)
    # no other file of the package spells the version out
    spelled = [
        p
        for p in (ROOT / "src" / "convexsnn").rglob("*.py")
        if f'"{convexsnn.__version__}"' in p.read_text() and p.name != "__init__.py"
    ]
    assert not spelled, spelled


def test_installed_metadata_matches_the_source():
    """An installed distribution reports the same version (skipped when none is installed)."""
    try:
        installed = importlib.metadata.version("convexsnn")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("convexsnn is not installed (only on the path)")
    assert installed == convexsnn.__version__


def test_cli_reports_the_version(capsys):
    from convexsnn.cli import main

    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code in (0, None)
    assert capsys.readouterr().out.strip() == f"convexsnn {convexsnn.__version__}"


def test_changelog_has_the_current_version():
    text = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in text
    assert f"## [{convexsnn.__version__}]" in text


# ------------------------------------------------------------------------- mypy baseline tool
def _baseline_tool():
    spec = importlib.util.spec_from_file_location(
        "mypy_baseline", ROOT / "tools" / "mypy_baseline.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


MYPY_OUTPUT = """\
src/convexsnn/a.py:3: error: Incompatible types in assignment  [assignment]
src/convexsnn/a.py:9:5: error: Item "None" has no attribute "x"  [union-attr]
src/convexsnn/a.py:9: note: See https://mypy.readthedocs.io
src/convexsnn/sub/b.py:1: error: Missing return statement  [return]
"""


def test_mypy_errors_are_counted_per_file():
    tool = _baseline_tool()
    assert tool.count_errors(MYPY_OUTPUT) == {"src/convexsnn/a.py": 2, "src/convexsnn/sub/b.py": 1}
    assert tool.count_errors("Success: no issues found in 44 source files\n") == {}


def test_mypy_baseline_fails_on_growth_only(tmp_path, capsys):
    tool = _baseline_tool()
    report = tmp_path / "mypy.txt"
    report.write_text(MYPY_OUTPUT)
    base = tmp_path / "baseline.json"

    def check(files, *extra):
        base.write_text(json.dumps({"total": sum(files.values()), "files": files}))
        return tool.main(["--report", str(report), "--baseline", str(base), *extra])

    assert check({"src/convexsnn/a.py": 2, "src/convexsnn/sub/b.py": 1}) == 0  # equal
    assert check({"src/convexsnn/a.py": 5, "src/convexsnn/sub/b.py": 1}) == 0  # shrank
    assert "fewer errors" in capsys.readouterr().out
    assert check({"src/convexsnn/a.py": 1, "src/convexsnn/sub/b.py": 1}) == 1  # grew
    assert check({"src/convexsnn/a.py": 2}) == 1  # a new file with errors
    # --update records shrinkage, refuses growth unless asked
    assert check({"src/convexsnn/a.py": 1, "src/convexsnn/sub/b.py": 1}, "--update") == 1
    assert check({"src/convexsnn/a.py": 7, "src/convexsnn/sub/b.py": 1}, "--update") == 0
    assert json.loads(base.read_text())["files"]["src/convexsnn/a.py"] == 2


def test_committed_mypy_baseline_is_consistent():
    data = json.loads((ROOT / "mypy-baseline.json").read_text())
    assert data["total"] == sum(data["files"].values())
    assert all(n > 0 and path.startswith("src/convexsnn/") for path, n in data["files"].items())
