"""Sequential MNIST (each image read as T row blocks) with the certified convex readout.

Reads the four canonical MNIST IDX files from ``--mnist-dir`` (default ``../shared/data/mnist``,
as the ``convexsnn demo`` command); without them it prints how to provide them and exits
without training (status 0), so it can run anywhere.

    python examples/sequential_mnist.py --mnist-dir DIR            # 6000 training images, T = 4
    python examples/sequential_mnist.py --mnist-dir DIR --quick    # 500 images: a smoke run
                                                                   # (seconds; low accuracy)
"""

import argparse
import sys
import warnings
from pathlib import Path

from convexsnn import fit_convex, gaussian_witnesses, load_task

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    parser.add_argument(
        "--mnist-dir",
        type=Path,
        default=Path("../shared/data/mnist"),
        help="folder of the MNIST IDX files (.gz or not)",
    )
    parser.add_argument("-T", type=int, default=4, help="time steps per image (default 4)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    missing = [
        f
        for f in MNIST_FILES
        if not (args.mnist_dir / f).is_file() and not (args.mnist_dir / (f + ".gz")).is_file()
    ]
    if missing:
        print(
            f"skipped: MNIST IDX files not found in {args.mnist_dir} (missing: "
            f"{', '.join(missing)}); pass --mnist-dir DIR"
        )
        return 0

    sizes = (
        dict(n_train=500, n_val=500, n_test=1000) if args.quick else dict(n_train=6000, n_val=5000)
    )
    task = load_task("mnist", directory=str(args.mnist_dir), T=args.T, seed=args.seed, **sizes)
    shape = (
        dict(n_branches=4, depth=2, p_last=256)
        if args.quick
        else dict(n_branches=16, depth=2, p_last=2048)
    )
    wit = gaussian_witnesses(task.input_size, **shape, scale=1.0, normalized=True, seed=args.seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = fit_convex(
            wit, task, loss="softmax", penalty="l1", n_regs=3, max_time=20 if args.quick else 120
        )
    for w in caught:
        print(f"warning: {w.message}")
    c = fit.certificate
    print(
        f"sequential MNIST T={args.T}: {len(task.train.y)} training images, "
        f"{fit.dictionary.n_columns} dictionary columns, {fit.model.n_features} neurons kept"
    )
    print(f"accuracy: val {fit.val_accuracy:.3f}, test {fit.test_accuracy:.3f}")
    print(f"certificate: gap {c.gap:.3g} (relative {c.rel_gap:.3g}), converged: {c.converged}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
