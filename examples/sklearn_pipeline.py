"""The scikit-learn face: ``ConvexSNNClassifier`` in a ``Pipeline`` with a grid search.

2-D data (iris) is one LIF step per sample; the scaler and the estimator are searched together
by ``GridSearchCV``, and the chosen model keeps the certificate of its convex readout.

    python examples/sklearn_pipeline.py            # iris, 3-fold grid over reg and width
    python examples/sklearn_pipeline.py --quick    # a smaller grid, a few seconds
"""

import argparse
import sys

try:
    from sklearn.datasets import load_iris
    from sklearn.model_selection import GridSearchCV, train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
except ImportError:
    sys.exit('this example needs scikit-learn: pip install "convexsnn[sklearn]"')

from convexsnn.estimators import ConvexSNNClassifier


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller grid (seconds)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    X, y = load_iris(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=0.3, stratify=y, random_state=args.seed
    )
    pipe = Pipeline(
        [("scale", StandardScaler()), ("snn", ConvexSNNClassifier(loss="softmax", seed=args.seed))]
    )
    grid = (
        {"snn__reg": [1e-2, 1e-1]}
        if args.quick
        else {"snn__reg": [1e-3, 1e-2, 1e-1], "snn__width": [16, 64]}
    )
    search = GridSearchCV(pipe, grid, cv=3).fit(X_tr, y_tr)

    clf = search.best_estimator_.named_steps["snn"]
    cert = clf.certificate_
    print(f"best parameters: {search.best_params_} (cv accuracy {search.best_score_:.3f})")
    print(f"test accuracy: {search.score(X_te, y_te):.3f}")
    print(
        f"readout certificate: gap {cert.gap:.3g} (relative {cert.rel_gap:.3g}), "
        f"converged: {cert.converged}"
    )
    print(f"network: {clf.network_.n_features} readout neurons kept")


if __name__ == "__main__":
    main()
