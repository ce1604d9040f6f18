"""Export a CVX-trained network to NIR, read it back, and check that nothing changed.

The model is fitted on FIRST-LAST-XOR (as in ``xor_cvx_certificate.py``), written as an NIR
graph (``export_nir``), read back (``import_nir``), and run again; the predictions of the
round-tripped network and of the graph under convexsnn's simulator (``simulate_nir``) must equal
the original ones.

    python examples/nir_export.py --out xor.nir    # keep the graph
    python examples/nir_export.py --quick          # small sizes; a temporary file
"""

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import torch

from convexsnn import fit_convex, gaussian_witnesses, load_task

try:
    from convexsnn.export import NIRExportWarning, export_nir, import_nir, simulate_nir
except ImportError:
    sys.exit('this example needs the NIR package: pip install "convexsnn[nir]"')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    parser.add_argument("--out", type=Path, help="where to write the graph (default: a temp dir)")
    parser.add_argument(
        "--exact-reset",
        action="store_true",
        help="write the subtract reset exactly (LI + threshold + feedback)",
    )
    args = parser.parse_args(argv)
    if args.out is not None and args.out.exists():
        parser.error(f"{args.out} exists; not overwriting it")

    sizes = dict(n_train=300, n_val=300, n_test=600) if args.quick else {}
    task = load_task("xor", T=6, seed=0, **sizes)
    wit = gaussian_witnesses(
        task.input_size,
        n_branches=8,
        depth=3,
        p_rec=64,
        p_last=128,
        scale=2.0,
        normalized=True,
        seed=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the readout's own warnings are not this example's topic
        model = fit_convex(wit, task, loss="squared", penalty="l1", regs=[0.1, 0.03]).model

    with tempfile.TemporaryDirectory() as tmp:
        path = args.out if args.out is not None else Path(tmp) / "xor.nir"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", NIRExportWarning)
            export_nir(model, path, exact_reset=args.exact_reset)
        for w in caught:  # e.g. NIR's LIF resets to a fixed potential, not by subtraction
            print(f"export note: {w.message}")
        back = import_nir(path)
        X = task.test.X
        with torch.no_grad():
            same = torch.equal(model.predict(X), back.predict(X))
            z_graph = simulate_nir(path, X).double()
            agree = torch.allclose(z_graph, model(X).double())
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    print(f"round trip (import_nir) predicts the same classes: {same}")
    print(f"the graph under simulate_nir gives the model's outputs: {agree}")
    return 0 if same and agree else 1


if __name__ == "__main__":
    sys.exit(main())
