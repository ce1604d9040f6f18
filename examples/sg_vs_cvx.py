"""SG versus CVX (and SG-CVX) on FIRST-LAST-XOR, each method one call of the pipelines.

SG trains a parallel SNN with surrogate gradients; CVX fits the certified convex readout over
Gaussian witnesses; SG-CVX reuses the hidden layers of the SG network as witnesses and refits
its readout convexly (with a certificate).

    python examples/sg_vs_cvx.py            # T = 6, depth 3, the default pipeline settings
    python examples/sg_vs_cvx.py --quick    # small sizes, a few seconds
"""

import argparse
import sys
import warnings

from convexsnn.pipelines import run_methods
from convexsnn.tasks import load_task

METHODS = ["SG", "CVX", "SG-CVX"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    parser.add_argument("-T", type=int, default=6, help="sequence length (default 6)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    sizes = dict(n_train=300, n_val=300, n_test=600) if args.quick else {}
    task = load_task("xor", T=args.T, seed=args.seed, **sizes)
    config = {"depth": 3, "scales": [2.0]}
    if args.quick:
        config.update(n_branches=8, p_rec=64, p_last=128, sg_epochs=5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = run_methods(METHODS, task, config=config, seed=args.seed)
    for w in caught:
        print(f"warning: {w.message}")

    print(f"FIRST-LAST-XOR T={args.T}, seed {args.seed}")
    print(f"{'method':8s} {'test acc':>8s} {'seconds':>8s}  certificate")
    status = 0
    for method, rec in zip(METHODS, records):
        if rec.get("error"):
            print(f"{method:8s} failed: {rec['error']}")
            status = 1
            continue
        cert = rec.get("certificate")
        note = (
            "-" if not cert else (f"rel_gap {cert['rel_gap']:.2g}, converged {cert['converged']}")
        )
        seconds = rec["seconds"]["total"]
        print(f"{method:8s} {rec['test_accuracy']:8.3f} {seconds:8.1f}  {note}")
    return status


if __name__ == "__main__":
    sys.exit(main())
