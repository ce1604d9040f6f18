"""The documentation works: the README's and the quickstart's code blocks run as written, the
command lines they show parse, and the Sphinx site builds with warnings as errors."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def code_blocks(path: Path, lang: str) -> list[str]:
    """The fenced code blocks of one language in a Markdown file, in order."""
    return [body for kind, body in _FENCE.findall(path.read_text()) if kind == lang]


def _subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env.setdefault("OMP_NUM_THREADS", "1")
    env["MPLBACKEND"] = "Agg"
    return env


def run_blocks(blocks: list[str], cwd: Path, timeout: float) -> None:
    """Run the blocks one after the other in one Python process (one namespace, like a reader
    pasting them into a session), in ``cwd``; fail with the block that raised."""
    script = ["import sys, traceback", "ns = {'__name__': '__main__'}", "blocks = ["]
    script += [f"    {b!r}," for b in blocks]
    script += [
        "]",
        "for i, b in enumerate(blocks):",
        "    try:",
        "        exec(compile(b, f'<block {i}>', 'exec'), ns)",
        "    except Exception:",
        "        traceback.print_exc()",
        "        sys.exit(f'block {i} failed:\\n{b}')",
    ]
    proc = subprocess.run(
        [sys.executable, "-c", "\n".join(script)],
        cwd=cwd,
        env=_subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]


def test_code_blocks_are_found():
    """The extraction sees the blocks (a renamed fence would otherwise test nothing)."""
    assert len(code_blocks(ROOT / "README.md", "python")) >= 1
    assert len(code_blocks(ROOT / "docs" / "quickstart.md", "python")) >= 5
    assert len(code_blocks(ROOT / "docs" / "quickstart.md", "bash")) >= 2


@pytest.mark.slow
def test_readme_python_blocks_run(tmp_path):
    run_blocks(code_blocks(ROOT / "README.md", "python"), tmp_path, timeout=900)
    assert (tmp_path / "xor-cvx").is_dir()  # the model the README saves


@pytest.mark.slow
def test_quickstart_python_blocks_run(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("nir")
    run_blocks(code_blocks(ROOT / "docs" / "quickstart.md", "python"), tmp_path, timeout=1200)
    assert (tmp_path / "xor.nir").is_file()


def cli_lines(path: Path) -> list[list[str]]:
    """The ``convexsnn ...`` command lines of the shell blocks of a Markdown file, as words."""
    lines = []
    for block in code_blocks(path, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                if len(words) >= 2 and words[0] == "convexsnn":
                    lines.append(words)
    return lines


@pytest.mark.parametrize("doc", ["README.md", "docs/quickstart.md"])
def test_shell_blocks_parse(doc, capsys):
    """Every ``convexsnn CMD ...`` line shown in a shell block parses with the CLI's parser (its
    command and flags exist; nothing is run), and ``convexsnn CMD --help`` exits cleanly."""
    from convexsnn.cli import build_parser, main

    lines = cli_lines(ROOT / doc)
    assert lines, f"no convexsnn command found in {doc}"
    for words in lines:
        try:
            build_parser().parse_args(words[1:])
        except SystemExit as exc:
            pytest.fail(f"{doc}: `{shlex.join(words)}` does not parse (status {exc.code})")
    for cmd in sorted({words[1] for words in lines}):
        try:
            status = main([cmd, "--help"])
        except SystemExit as exc:
            status = exc.code
        assert status in (0, None), f"convexsnn {cmd} --help exited with {status}"
        assert cmd in capsys.readouterr().out


@pytest.mark.slow
def test_sphinx_build_has_no_warnings(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("numpydoc")
    pytest.importorskip("myst_parser")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            str(ROOT / "docs"),
            str(tmp_path / "html"),
        ],
        env=_subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    html = (tmp_path / "html" / "api.html").read_text()
    for name in (
        "convexsnn.convex.solve_readout",
        "convexsnn.selection.fit_convex",
        "convexsnn.network.ParallelSNN",
        "convexsnn.tasks.load_task",
    ):
        assert f'id="{name}"' in html, f"{name} missing from the API reference"
