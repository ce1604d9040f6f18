"""Regenerate the experiment tables of RESULTS.md from the committed per-cell JSON (runs no cell).

Two steps, both from the files under ``results/``:

1. ``reproduce(NAME, "results", seeds=..., run=False)`` rewrites ``results/NAME/table.md``,
   ``results.json`` and the plots of every experiment of :data:`SEEDS` from its cell files;
2. every block of RESULTS.md between the lines ``<!-- generated from results/NAME/table.md -->``
   and ``<!-- end of generated results/NAME/table.md -->`` is replaced by that ``table.md`` from
   its ``Mode:`` line on (the experiment's title and description stay hand-written above it).

::

    python tools/sync_results.py               # steps 1 and 2
    python tools/sync_results.py --no-tables   # step 2 only (the table.md files as they are)
    python tools/sync_results.py --check       # exit 1 when RESULTS.md differs from table.md

Text outside the marked blocks is never touched; a marker without its partner is an error.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: the seeds each experiment's committed cells were run for (as in RESULTS.md's commands)
SEEDS = {
    "addition": (0, 1, 2),
    "xor": (0, 1, 2),
    "ablations": (0, 1, 2),
    "long_memory": (0,),
}

_BEGIN = "<!-- generated from results/{name}/table.md -->"
_END = "<!-- end of generated results/{name}/table.md -->"


def regenerate_tables(root: Path, names) -> None:
    """Rewrite ``results/<name>/table.md`` (and results.json, plots) from the cell files."""
    from convexsnn.experiments import reproduce

    for name in names:
        reproduce(name, root / "results", seeds=SEEDS[name], run=False)


def generated_body(root: Path, name: str) -> str:
    """``results/<name>/table.md`` from its ``Mode:`` line on, without trailing blank lines."""
    text = (root / "results" / name / "table.md").read_text(encoding="utf-8")
    i = text.find("\nMode:")
    if i < 0:
        raise ValueError(f"results/{name}/table.md has no 'Mode:' line")
    return text[i + 1 :].rstrip("\n")


def sync_text(text: str, bodies: dict[str, str]) -> tuple[str, list[str]]:
    """``text`` with every marked block replaced by ``bodies[name]``; and the names replaced."""
    done = []
    for name, body in bodies.items():
        begin, end = _BEGIN.format(name=name), _END.format(name=name)
        n_begin, n_end = text.count(begin), text.count(end)
        if n_begin == n_end == 0:
            continue
        if n_begin != 1 or n_end != 1:
            raise ValueError(
                f"RESULTS.md: expected one '{begin}' and one '{end}', found {n_begin} and {n_end}"
            )
        match = re.search(re.escape(begin) + r"\n.*?" + re.escape(end), text, re.S)
        if match is None:
            raise ValueError(f"RESULTS.md: '{end}' comes before '{begin}'")
        text = text[: match.start()] + f"{begin}\n\n{body}\n\n{end}" + text[match.end() :]
        done.append(name)
    return text, done


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=ROOT, help="repository root")
    ap.add_argument("--no-tables", action="store_true", help="do not rerun reproduce(run=False)")
    ap.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if RESULTS.md is stale"
    )
    args = ap.parse_args(argv)
    root = args.root
    names = [n for n in SEEDS if (root / "results" / n / "cells").is_dir()]
    if not args.check and not args.no_tables:
        regenerate_tables(root, names)
    path = root / "RESULTS.md"
    old = path.read_text(encoding="utf-8")
    new, done = sync_text(old, {n: generated_body(root, n) for n in names})
    if args.check:
        if new != old:
            print("RESULTS.md differs from results/*/table.md: run python tools/sync_results.py")
            return 1
        print(f"RESULTS.md matches the tables of {', '.join(done) or 'no experiment'}")
        return 0
    if new != old:
        path.write_text(new, encoding="utf-8")
    state = "updated" if new != old else "unchanged"
    print(f"RESULTS.md: {state} ({', '.join(done) or 'no blocks'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
