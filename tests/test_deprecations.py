"""The old names of the leak (``beta`` -> ``leak``) and of the regularisation (``beta`` ->
``reg``, ``betas`` -> ``regs``, ...) still work, warn with a
:class:`~convexsnn._checks.ConvexSNNDeprecationWarning` naming the new one and give the same
result; old and new together are a ``TypeError``. Files saved under the old keys still load.

These are the only tests allowed to use the old names (pyproject turns the warning into an error
everywhere else).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from convexsnn import ParallelSNN
from convexsnn._checks import ConvexSNNDeprecationWarning, rename_keys
from convexsnn.convex import solve_path, solve_readout
from convexsnn.lif import lif_scan, lif_step, simulate
from convexsnn.witnesses import Witnesses, gaussian_witnesses

pytestmark = pytest.mark.usefixtures("one_thread")


def _old(new: str):
    """``pytest.warns`` for a deprecated name whose message names ``new``."""
    return pytest.warns(ConvexSNNDeprecationWarning, match=f"use '{new}'")


def _x(seed: int = 0) -> torch.Tensor:
    return torch.rand(4, 6, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _ws() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(1, 3, 5, generator=g, dtype=torch.float64) * 1.5]


# ---------------------------------------------------------------------- the neuron: leak
def test_lif_functions_accept_beta():
    cur = torch.rand(2, 7, 1, 3, generator=torch.Generator().manual_seed(0)) * 2
    new = lif_scan(cur, leak=0.7, return_membrane=True)
    with _old("leak"):
        old = lif_scan(cur, beta=0.7, return_membrane=True)
    assert torch.equal(new[0], old[0]) and torch.equal(new[1], old[1])
    m, i = torch.zeros(3), torch.tensor([0.5, 1.0, 2.0])
    with _old("leak"):
        assert all(
            torch.equal(a, b) for a, b in zip(lif_step(m, i, beta=0.5), lif_step(m, i, leak=0.5))
        )
    with _old("leak"):
        old = simulate(_x(), _ws(), beta=0.8)
    assert torch.equal(old.spikes[0], simulate(_x(), _ws(), leak=0.8).spikes[0])


def test_network_and_witnesses_accept_beta():
    kw = dict(n_branches=2, hidden_widths=[4], seed=3, dtype=torch.float64, init_scale=3.0)
    with _old("leak"):
        old = ParallelSNN(3, 2, beta=0.6, **kw)
    new = ParallelSNN(3, 2, leak=0.6, **kw)
    assert old.config == new.config and torch.equal(old(_x()), new(_x()))
    with _old("leak"):
        w_old = gaussian_witnesses(3, hidden_widths=[4], seed=0, beta=0.7)
    w_new = gaussian_witnesses(3, hidden_widths=[4], seed=0, leak=0.7)
    assert w_old.fingerprint() == w_new.fingerprint()
    with _old("leak"):
        assert w_new.beta == 0.7
    with _old("leak"):
        w = Witnesses(list(w_new.weights), beta=0.7)
    assert w.leak == 0.7


def test_estimator_accepts_beta():
    from convexsnn.estimators import ConvexSNNClassifier

    with _old("leak"):
        est = ConvexSNNClassifier(beta=0.5)
    assert est.leak == 0.5 and est.get_params()["leak"] == 0.5 and "beta" not in est.get_params()
    with _old("leak"):
        assert est.beta == 0.5


def test_pipeline_config_old_names():
    from convexsnn.pipelines import PipelineConfig

    with pytest.warns(ConvexSNNDeprecationWarning, match="use '(leak|n_regs)'") as rec:
        old = PipelineConfig(beta=0.5, n_betas=2)
    assert len(rec) == 2
    assert old == PipelineConfig(leak=0.5, n_regs=2)
    with _old("regs"):
        assert PipelineConfig(regs=(0.1,)).reg_betas == (0.1,)
    # stored configs (experiment cells, CLI --config files) use the old keys: read silently
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = PipelineConfig.from_dict({"beta": 0.5, "reg_betas": [0.1], "beta_ratio": 1e-2})
    assert (cfg.leak, cfg.regs, cfg.reg_ratio) == (0.5, (0.1,), 1e-2)


# ---------------------------------------------------------------------- the regulariser: reg
def _problem():
    g = torch.Generator().manual_seed(0)
    D = (torch.rand(40, 12, generator=g) < 0.4).double()
    y = torch.randint(0, 3, (40,), generator=g)
    return D, y


def test_solvers_accept_beta():
    D, y = _problem()
    new = solve_readout(D, y, loss="softmax", reg=0.5, tol=1e-8)
    with _old("reg"):
        old = solve_readout(D, y, loss="softmax", beta=0.5, tol=1e-8)
    assert torch.equal(old.W, new.W) and old.lam == new.lam and old.reg == 0.5
    with _old("reg"):
        assert new.beta == 0.5
    with _old("regs"):
        old_path = solve_path(D, y, betas=[0.5, 0.1], loss="softmax", tol=1e-8)
    new_path = solve_path(D, y, regs=[0.5, 0.1], loss="softmax", tol=1e-8)
    assert all(torch.equal(a.W, b.W) for a, b in zip(old_path, new_path))


def test_fit_convex_and_default_regs_accept_old_names():
    from convexsnn.selection import default_betas, default_regs, fit_convex

    with _old("default_regs"):
        assert default_betas(2.0, n=3) == default_regs(2.0, n=3)
    g = torch.Generator().manual_seed(0)
    X = (torch.rand(80, 3, 2, generator=g) < 0.5).double()
    y = (X[:, 0, 0] != X[:, -1, 1]).long()
    data = (X[:60], y[:60], X[60:], y[60:])
    w = gaussian_witnesses(2, n_branches=4, hidden_widths=[8], scale=2.0, seed=0)
    kw = dict(loss="squared", tol=1e-6, check=False)
    new = fit_convex(w, data, regs=[0.1, 0.01], **kw)
    with _old("regs"):
        old = fit_convex(w, data, betas=[0.1, 0.01], **kw)
    assert torch.equal(old.W, new.W) and old.reg == new.reg
    with _old("reg"):
        assert new.beta == new.reg
    with _old("regs"):
        assert new.betas == new.regs


# ---------------------------------------------------------------------- both: TypeError
@pytest.mark.parametrize(
    "call",
    [
        lambda: lif_scan(torch.zeros(1, 2, 1, 1), beta=0.5, leak=0.5),
        lambda: ParallelSNN(2, 2, hidden_widths=[3], beta=0.5, leak=0.5),
        lambda: gaussian_witnesses(2, hidden_widths=[3], beta=0.5, leak=0.5),
        lambda: solve_readout(*_problem(), beta=0.5, reg=0.5),
        lambda: solve_path(*_problem(), betas=[0.5], regs=[0.5]),
    ],
)
def test_old_and_new_together_is_a_type_error(call):
    with pytest.raises(TypeError, match="got both 'beta.*pass only"):
        call()


# ---------------------------------------------------------------------- files saved before
def test_model_saved_with_beta_key_still_loads(tmp_path):
    net = ParallelSNN(3, 2, n_branches=2, hidden_widths=[4], leak=0.6, seed=0, dtype=torch.float64)
    cfg = rename_keys(net.config, {"leak": "beta"}, "test", warn=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        old = ParallelSNN.from_config(cfg)
    assert old.config == net.config
    # a whole v2 save written by the earlier version (config key "beta", checksums over it)
    path = net.save(tmp_path / "m")
    meta = json.loads((path / "config.json").read_text())
    meta["config"] = rename_keys(meta["config"], {"leak": "beta"}, "test", warn=False)
    from convexsnn._persist import meta_sha256 as _meta_sha256

    meta["meta_sha256"] = _meta_sha256(meta)
    (path / "config.json").write_text(json.dumps(meta))
    loaded = ParallelSNN.load(path)
    assert loaded.config["leak"] == 0.6 and torch.equal(loaded(_x()), net(_x()))


def test_witness_meta_with_beta_key_still_loads():
    w = gaussian_witnesses(3, hidden_widths=[4], seed=0, leak=0.7)
    meta = rename_keys(w.meta(), {"leak": "beta"}, "test", warn=False)
    back = Witnesses.from_arrays(meta, w.state_arrays())
    assert back.leak == 0.7 and back.fingerprint() == w.fingerprint()


def test_fingerprint_unchanged_by_the_rename():
    # recorded fingerprints hash the LIF parameters under the old key "beta"
    import hashlib

    w = gaussian_witnesses(2, hidden_widths=[3], seed=0, leak=0.9)
    h = hashlib.sha256()
    h.update(
        json.dumps(
            {"beta": 0.9, "theta": 1.0, "reset": "subtract", "dtype": "float64"}, sort_keys=True
        ).encode()
    )
    for name, arr in sorted(w.state_arrays().items()):
        h.update(name.encode())
        h.update(str(arr.shape).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    assert w.fingerprint() == h.hexdigest()


def test_the_suite_turns_deprecated_names_into_errors():
    # pyproject's filterwarnings: a library or test use of an old name fails the suite
    with pytest.raises(ConvexSNNDeprecationWarning):
        lif_scan(torch.zeros(1, 2, 1, 1), beta=0.5)
