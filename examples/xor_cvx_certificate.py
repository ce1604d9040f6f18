"""CVX on FIRST-LAST-XOR: Gaussian witnesses, a certified convex readout, a pruned network.

The label of a sequence is its first symbol XOR its last one. Random LIF witness networks are
simulated on the training set (the spike dictionary), the convex readout is solved to a duality
gap that certifies global optimality over that dictionary, and the neurons with non-zero output
weights become a real ``ParallelSNN`` whose forward pass reproduces the convex predictions.

    python examples/xor_cvx_certificate.py            # T = 6, depth 5, 2000/2000/4000 sequences
    python examples/xor_cvx_certificate.py --quick    # depth 3, 300/300/600, a few seconds
"""

import argparse
import warnings

from convexsnn import fit_convex, gaussian_witnesses, load_task


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    parser.add_argument("-T", type=int, default=6, help="sequence length (default 6)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    sizes = dict(n_train=300, n_val=300, n_test=600) if args.quick else {}
    task = load_task("xor", T=args.T, seed=args.seed, **sizes)
    # K branches of LIF layers; depth counts the output layer (p_rec neurons a hidden layer,
    # p_last in the last one, summed over branches)
    shape = (
        dict(n_branches=8, depth=3, p_rec=64, p_last=128)
        if args.quick
        else dict(n_branches=8, depth=5, p_rec=200, p_last=400)
    )
    wit = gaussian_witnesses(task.input_size, **shape, scale=2.0, normalized=True, seed=args.seed)
    with warnings.catch_warnings(record=True) as caught:  # an unconverged solve warns: report it
        warnings.simplefilter("always")
        fit = fit_convex(
            wit,
            task,
            loss="squared",
            penalty="l1",
            regs=[0.1, 0.03],
            max_time=20 if args.quick else None,
        )
    for w in caught:
        print(f"warning: {w.message}")

    c = fit.certificate
    print(
        f"FIRST-LAST-XOR T={args.T}: {fit.dictionary.n_columns} dictionary columns, "
        f"{fit.model.n_features} readout neurons kept"
    )
    print(
        f"accuracy: train {fit.train_accuracy:.3f}, val {fit.val_accuracy:.3f}, "
        f"test {fit.test_accuracy:.3f} (reg {fit.reg:g} chosen on validation)"
    )
    print(
        f"certificate: primal {c.primal:.6g}, dual {c.dual:.6g}, gap {c.gap:.3g} "
        f"(relative {c.rel_gap:.3g}), converged: {c.converged}"
    )


if __name__ == "__main__":
    main()
