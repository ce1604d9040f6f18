"""Every script in ``examples/`` runs in its ``--quick`` mode and prints what it promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# script -> (required import, lines its output must contain)
EXPECTED = {
    "xor_cvx_certificate.py": (None, ["certificate: primal", "converged: True", "accuracy:"]),
    "sg_vs_cvx.py": (None, ["SG ", "CVX ", "SG-CVX ", "rel_gap"]),
    "sklearn_pipeline.py": ("sklearn", ["best parameters", "readout certificate"]),
    "nir_export.py": (
        "nir",
        ["predicts the same classes: True", "gives the model's outputs: True"],
    ),
    "sequential_mnist.py": (None, []),
}


def _mnist_dir() -> Path | None:
    """The shared MNIST folder next to the checkout (or next to its parent, for worktrees)."""
    for base in (ROOT.parent, ROOT.parent.parent):
        d = base / "shared" / "data" / "mnist"
        if any((d / f"train-images-idx3-ubyte{ext}").is_file() for ext in (".gz", "")):
            return d
    return None


def _run(script: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env.setdefault("OMP_NUM_THREADS", "1")
    env["MPLBACKEND"] = "Agg"
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_every_example_is_tested():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_quick_mode_runs(script):
    module, expected = EXPECTED[script]
    if module is not None:
        pytest.importorskip(module)
    args = ["--quick"]
    if script == "sequential_mnist.py":
        mnist = _mnist_dir()
        if mnist is None:
            pytest.skip("the MNIST IDX files are not next to this checkout (../shared/data/mnist)")
        args += ["--mnist-dir", str(mnist)]
        expected = ["sequential MNIST T=4", "certificate: gap"]
    proc = _run(script, *args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    for line in expected:
        assert line in proc.stdout, f"{script}: {line!r} not in its output:\n{proc.stdout}"


def test_mnist_example_without_data_says_so(tmp_path):
    proc = _run("sequential_mnist.py", "--quick", "--mnist-dir", str(tmp_path / "none"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("skipped: MNIST IDX files not found in")
    assert "--mnist-dir" in proc.stdout
