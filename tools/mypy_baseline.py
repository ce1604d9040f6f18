"""Run mypy and compare its error count per file with the committed ``mypy-baseline.json``.

The baseline can only shrink: the check fails when a file has more errors than recorded (or a
file without an entry has any), and passes otherwise. When a file has fewer errors than recorded
the check says so; ``--update`` then writes the smaller counts. ``--update`` refuses to record a
count larger than the baseline's unless ``--allow-growth`` is given (a deliberate decision, made
visible in the diff of ``mypy-baseline.json``).

Usage::

    python tools/mypy_baseline.py                 # check (exit 1 on growth)
    python tools/mypy_baseline.py --update        # record the smaller counts
    python tools/mypy_baseline.py --report FILE   # check the saved output of a mypy run

mypy reads its configuration (files, overrides) from ``pyproject.toml``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "mypy-baseline.json"
_ERROR = re.compile(r"^(?P<path>[^:\n]+\.pyi?):\d+(?::\d+)?: error: ", re.MULTILINE)


def count_errors(output: str) -> dict[str, int]:
    """Errors per file in mypy's output (``path:line: error: ...`` lines; notes not counted)."""
    counts = Counter(m.group("path").replace("\\", "/") for m in _ERROR.finditer(output))
    return dict(sorted(counts.items()))


def compare(baseline: dict[str, int], current: dict[str, int]) -> tuple[list[str], list[str]]:
    """Lines describing files whose count grew, and files whose count shrank."""
    grown, shrunk = [], []
    for path in sorted(set(baseline) | set(current)):
        old, new = baseline.get(path, 0), current.get(path, 0)
        if new > old:
            grown.append(f"{path}: {old} -> {new} errors")
        elif new < old:
            shrunk.append(f"{path}: {old} -> {new} errors")
    return grown, shrunk


def run_mypy() -> str:
    """mypy's output on the files configured in pyproject.toml (status 0: clean, 1: errors)."""
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", "--no-pretty"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if proc.returncode not in (0, 1):
        sys.exit(
            f"mypy_baseline: mypy failed to run (status {proc.returncode}):\n"
            f"{proc.stdout}{proc.stderr}"
        )
    return proc.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--update", action="store_true", help="write the current counts to mypy-baseline.json"
    )
    parser.add_argument(
        "--allow-growth", action="store_true", help="with --update: also record counts that grew"
    )
    parser.add_argument("--report", type=Path, help="read mypy's output from this file")
    parser.add_argument("--baseline", type=Path, default=BASELINE)
    args = parser.parse_args(argv)

    output = args.report.read_text() if args.report else run_mypy()
    current = count_errors(output)
    baseline = {}
    if args.baseline.exists():
        baseline = json.loads(args.baseline.read_text())["files"]
    grown, shrunk = compare(baseline, current)
    total_old, total_new = sum(baseline.values()), sum(current.values())

    if args.update:
        if grown and not args.allow_growth:
            print(
                "mypy_baseline: refusing to record more errors (use --allow-growth):",
                *grown,
                sep="\n  ",
            )
            return 1
        args.baseline.write_text(
            json.dumps({"total": total_new, "files": current}, indent=2) + "\n"
        )
        print(
            f"mypy_baseline: recorded {total_new} errors in {len(current)} files (was {total_old})"
        )
        return 0
    if grown:
        print(
            "mypy_baseline: more mypy errors than recorded in mypy-baseline.json:",
            *grown,
            sep="\n  ",
        )
        print(output)
        return 1
    if shrunk:
        print(
            "mypy_baseline: fewer errors than recorded; run "
            "`python tools/mypy_baseline.py --update` and commit mypy-baseline.json:",
            *shrunk,
            sep="\n  ",
        )
    print(f"mypy_baseline: {total_new} errors (baseline {total_old}), no file has more")
    return 0


if __name__ == "__main__":
    sys.exit(main())
