"""scikit-learn estimators: the common estimator checks, Pipeline / GridSearchCV, XOR learning."""

from __future__ import annotations

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import ConvergenceWarning as SkConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import FunctionTransformer, StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from convexsnn.convex import ConvergenceWarning  # noqa: E402
from convexsnn.estimators import (
    ConvexSNNClassifier,
    SNNConvergenceWarning,  # noqa: E402
    SurrogateSNNClassifier,
    expected_failed_checks,
)
from convexsnn.network import ParallelSNN  # noqa: E402
from convexsnn.tasks import load_task  # noqa: E402

# small instances keep the ~40 common checks of each estimator to seconds
CHECKED = [
    ConvexSNNClassifier(n_branches=4, width=16, reg=0.1),
    SurrogateSNNClassifier(width=16, epochs=40, init_scale=3.0, lr=0.05, batch_size=None),
]


@parametrize_with_checks(CHECKED, expected_failed_checks=expected_failed_checks)
def test_sklearn_common_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


@pytest.fixture(scope="module")
def xor4():
    task = load_task("xor", T=4, n_train=256, n_val=64, n_test=512, ood_lengths=(), seed=0)
    return (task.train.X.numpy(), task.train.y.numpy(), task.test.X.numpy(), task.test.y.numpy())


def test_convex_learns_xor_T4_with_certificate(xor4):
    X, y, Xt, yt = xor4
    est = ConvexSNNClassifier(seed=0).fit(X, y)
    assert est.score(Xt, yt) > 0.9
    cert = est.certificate_
    assert cert.converged and cert.rel_gap <= est.tol
    assert cert.dual <= cert.primal + 1e-12
    assert est.n_features_in_ == 2 and est.n_steps_in_ == 4
    assert isinstance(est.network_, ParallelSNN)
    assert 0 < est.n_neurons_ <= est.dictionary_.n_columns
    # the reconstructed network reproduces the convex scores D W on the training rows
    D = est.dictionary_.matrix()
    z_dict = (D.to(est.solution_.W.dtype) @ est.solution_.W).numpy().reshape(-1)
    np.testing.assert_allclose(est.decision_function(X), z_dict, rtol=1e-9, atol=1e-12)


def test_surrogate_learns_xor_T4(xor4):
    X, y, Xt, yt = xor4
    est = SurrogateSNNClassifier(
        depth=3, width=32, epochs=40, batch_size=64, init_scale=2.0, seed=0
    ).fit(X, y)
    assert est.score(Xt, yt) > 0.9
    assert est.n_iter_ == 40 and len(est.history_["history"]["train_loss"]) == 40


def test_labels_any_values_and_proba():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    y = np.where(X[:, 0] + 0.5 * X[:, 1] > 0, "yes", "no")
    est = ConvexSNNClassifier(n_branches=8, width=16, loss="softmax").fit(X, y)
    assert list(est.classes_) == ["no", "yes"]
    pred = est.predict(X)
    assert set(pred) <= {"no", "yes"} and (pred == y).mean() > 0.85
    proba = est.predict_proba(X)
    assert proba.shape == (120, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.array_equal(est.classes_[proba.argmax(axis=1)], pred)
    assert est.decision_function(X).shape == (120,)
    # three classes: integer labels that are not 0..C-1
    y3 = np.digitize(X[:, 0], [-0.5, 0.5]) * 10 + 7
    est3 = ConvexSNNClassifier(n_branches=8, width=16).fit(X, y3)
    assert list(est3.classes_) == [7, 17, 27]
    assert est3.decision_function(X).shape == (120, 3)
    assert (est3.predict(X) == y3).mean() > 0.8


def test_predict_proba_only_for_softmax():
    assert not hasattr(ConvexSNNClassifier(loss="squared"), "predict_proba")
    assert not hasattr(ConvexSNNClassifier(loss="hinge"), "predict_proba")
    assert hasattr(ConvexSNNClassifier(loss="softmax"), "predict_proba")
    assert not hasattr(SurrogateSNNClassifier(loss="hinge"), "predict_proba")


def test_2d_input_is_T1():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(80, 4))
    y = (X[:, 0] > 0).astype(int)
    a = ConvexSNNClassifier(n_branches=4, width=8).fit(X, y)
    b = ConvexSNNClassifier(n_branches=4, width=8).fit(X[:, None, :], y)
    assert a.n_steps_in_ == 1 and a.n_features_in_ == 4
    np.testing.assert_array_equal(a.predict(X), b.predict(X[:, None, :]))
    with pytest.raises(ValueError, match="features"):
        a.predict(X[:, None, :2])


def test_pipeline_and_gridsearch(xor4):
    X, y, Xt, yt = xor4
    # a Pipeline on 2-D data (T = 1)
    rng = np.random.default_rng(2)
    X2 = rng.normal(size=(150, 2)) * [5.0, 0.1]
    y2 = (X2[:, 0] * X2[:, 1] > 0).astype(int)
    pipe = Pipeline(
        [("scale", StandardScaler()), ("snn", ConvexSNNClassifier(n_branches=8, width=16, seed=1))]
    )
    pipe.fit(X2, y2)
    assert pipe.score(X2, y2) > 0.85
    # GridSearchCV over convex options on sequences (3-D X)
    grid = GridSearchCV(
        ConvexSNNClassifier(n_branches=8, width=16, loss="hinge"), {"reg": [1e-2, 3.0]}, cv=2
    )
    grid.fit(X, y)
    assert grid.best_params_["reg"] == 1e-2
    assert grid.best_estimator_.score(Xt, yt) > 0.9
    # a preprocessing step that keeps 3-D input works in a Pipeline too
    pipe3 = Pipeline([("id", FunctionTransformer()), ("snn", ConvexSNNClassifier())])
    assert pipe3.fit(X, y).score(Xt, yt) > 0.9


def test_convergence_warning_is_both_kinds():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(100, 3))
    y = (X.sum(axis=1) > 0).astype(int)
    est = ConvexSNNClassifier(
        n_branches=8, width=16, loss="softmax", reg=1e-4, tol=1e-14, max_iter=3
    )
    with pytest.warns(SNNConvergenceWarning) as rec:
        est.fit(X, y)
    w = [r.message for r in rec if isinstance(r.message, SNNConvergenceWarning)][0]
    assert isinstance(w, SkConvergenceWarning) and isinstance(w, ConvergenceWarning)
    assert w.certificate is not None and not w.certificate.converged
    assert not est.certificate_.converged and est.converged_ is False
    assert est.certificate_.status == "max_iter" and est.dual_gap_ == est.certificate_.gap > 0


def test_clone_pickle_and_invalid_params():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(60, 2, 3))
    y = (X[:, -1, 0] > 0).astype(int)
    est = ConvexSNNClassifier(n_branches=4, width=8).fit(X, y)
    est2 = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(est.predict(X), est2.predict(X))
    assert clone(est).get_params() == est.get_params()
    with pytest.raises(ValueError, match="width"):
        ConvexSNNClassifier(width=0).fit(X, y)
    with pytest.raises(ValueError, match="depth"):
        ConvexSNNClassifier(depth=1).fit(X, y)
    with pytest.raises(ValueError):
        ConvexSNNClassifier(loss="nope").fit(X, y)
    with pytest.raises(ValueError, match="class"):
        ConvexSNNClassifier().fit(X, np.zeros(60))


def test_network_save_load_roundtrip(tmp_path):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(60, 3, 2))
    y = (X[:, 0, 0] * X[:, -1, 1] > 0).astype(int)
    est = ConvexSNNClassifier(n_branches=8, width=8, loss="hinge").fit(X, y)
    path = est.network_.save(tmp_path / "m", extra=est.network_.saved_extra)
    net = ParallelSNN.load(path)
    import torch

    with torch.no_grad():
        z = net(torch.from_numpy(X)).numpy()[:, 0]
    np.testing.assert_allclose(z, est.decision_function(X), rtol=1e-12, atol=1e-12)


def test_import_convexsnn_does_not_import_sklearn():
    code = "import sys, convexsnn; sys.exit(1 if 'sklearn' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
