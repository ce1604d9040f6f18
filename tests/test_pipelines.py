"""Every pipeline runs on a tiny task and returns a complete, JSON-safe record."""

import json

import pytest

from convexsnn.pipelines import METHODS, PipelineConfig, run_method, run_methods
from convexsnn.tasks import load_task

TINY = dict(
    n_branches=2,
    depth=3,
    p_rec=16,
    p_last=16,
    scales=(2.0,),
    n_regs=2,
    tol=1e-3,
    max_time=3.0,
    sg_n_branches=1,
    sg_p_rec=16,
    sg_p_last=16,
    sg_epochs=1,
    ft_epochs=1,
    sg_init_scale=4.0,
    sg_batch_size=64,
    res_leaks=(0.9,),
    res_input_scales=(2.0,),
)

FIELDS = (
    "method",
    "seed",
    "task",
    "val_accuracy",
    "test_accuracy",
    "ood_accuracy",
    "chosen",
    "certificate",
    "certificates",
    "dictionary",
    "n_witness_neurons",
    "kept_neurons",
    "model",
    "reconstruction_check",
    "training",
    "seconds",
    "config",
)
CONVEX = ("CVX", "SG-CVX", "R-CVX")


@pytest.fixture(scope="module")
def xor_records():
    task = load_task("xor", T=6, n_train=120, n_val=80, n_test=80, seed=0)
    return run_methods(list(METHODS), task, config=TINY, seed=0)


def test_every_method_returns_every_field(xor_records):
    assert [r["method"] for r in xor_records] == list(METHODS)
    for r in xor_records:
        for f in FIELDS:
            assert f in r, (r["method"], f)
        json.dumps(r, allow_nan=False)
        assert 0.0 <= r["val_accuracy"] <= 1.0 and 0.0 <= r["test_accuracy"] <= 1.0
        assert set(r["ood_accuracy"]) == {"T=12", "T=30"}
        assert r["seconds"]["total"] >= 0 and r["kept_neurons"] >= 0
        if r["method"] in CONVEX:
            cert = r["certificate"]
            assert cert["gap"] >= 0 and cert["primal"] >= cert["dual"] - 1e-12
            for k in ("n_columns", "n_unique", "density"):
                assert k in r["dictionary"]
            assert r["n_witness_neurons"] >= r["dictionary"]["n_columns"]
            assert r["reconstruction_check"]["prediction_agreement"] == 1.0
            assert "reg_beta" in r["chosen"]
            assert r["kept_neurons"] <= r["n_witness_neurons"]
        else:
            assert r["training"]["epochs_run"] >= 1


def test_finetune_control_has_same_budget(xor_records):
    by = {r["method"]: r for r in xor_records}
    assert by["CVX->SG"]["chosen"]["ft_epochs"] == by["SG->SG"]["chosen"]["ft_epochs"]
    # fine-tuning is kept only if validation accuracy does not drop
    assert by["CVX->SG"]["val_accuracy"] >= by["CVX"]["val_accuracy"]
    assert by["SG->SG"]["val_accuracy"] >= by["SG"]["val_accuracy"]


def test_addition_autoregressive_and_leak_free_lookup():
    task = load_task(
        "addition", base=2, n_train=300, n_val=100, n_test=100, n_ood=50, ood_n_digits=(10,), seed=0
    )
    cfg = PipelineConfig(
        n_branches=1,
        depth=2,
        p_rec=128,
        p_last=128,
        leak=0.0,
        scales=(4.0,),
        n_regs=3,
        reg_ratio=1e-3,
        tol=1e-3,
        max_time=10.0,
    )
    r = run_method("CVX", task, config=cfg, seed=0)
    assert set(r["ar"]) == {"ID", "n_digits=10"}
    assert len(r["certificates"]) == 2  # one convex problem per head
    assert r["model"]["beta"] == 0.0
    # leak-free witnesses make the per-step lookup exact: 100% at every length
    for m in r["ar"].values():
        assert m["joint_token_acc"] == 1.0


def test_bad_method_and_option():
    task = load_task("xor", T=4, n_train=20, n_val=20, n_test=20, seed=0)
    with pytest.raises(ValueError, match="unknown method"):
        run_method("NOPE", task, config=TINY)
    with pytest.raises(ValueError, match="unknown pipeline options"):
        PipelineConfig.from_dict({"widht": 3})


def test_config_round_trip():
    cfg = PipelineConfig.from_dict(TINY)
    assert PipelineConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_silent_witnesses_give_an_error_record():
    task = load_task("xor", T=4, n_train=40, n_val=20, n_test=20, seed=0)
    cfg = dict(TINY, scales=(1e-6,))  # no witness neuron ever reaches threshold
    recs = run_methods(["CVX", "CVX->SG"], task, config=cfg, seed=0)
    assert all(r["test_accuracy"] is None and "error" in r for r in recs)
    assert "CVX" in recs[1]["error"]


def test_recurrent_sg_network_with_biases_carries_into_sg_cvx():
    task = load_task("xor", T=6, n_train=120, n_val=80, n_test=80, seed=0)
    cfg = dict(TINY, sg_recurrent="dense", sg_bias=True, sg_epochs=2)
    (sg, sgcvx), (net, rebuilt) = run_methods(
        ["SG", "SG-CVX"], task, config=cfg, seed=0, return_models=True
    )
    assert sg["config"]["sg_recurrent"] == "dense" and sg["config"]["sg_bias"] is True
    assert net.config["recurrent"] == "dense" and net.biases is not None
    assert float(net.recurrent_weights[0].detach().abs().sum()) > 0  # learnt (zero at init)
    assert sgcvx["reconstruction_check"]["prediction_agreement"] == 1.0
    assert rebuilt.recurrent_weights is not None
    with pytest.raises(ValueError, match="recurrent"):
        run_method("SG", task, config=dict(TINY, sg_recurrent="full"))
