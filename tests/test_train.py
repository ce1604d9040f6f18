"""Surrogate-gradient training: learning, seeding, best-epoch restore, losses, layouts, checks."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import rand_inputs, small_net
from convexsnn import ParallelSNN
from convexsnn.tasks import load_task
from convexsnn.train import (
    LOSSES,
    TrainResult,
    datafit,
    evaluate,
    evaluate_accuracy,
    hinge_loss,
    softmax_loss,
    squared_loss,
    train_surrogate,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _data(n=48, T=5, d=3, n_classes=3, seed=0, token=False):
    """Random inputs; labels a (learnable) function of the inputs."""
    X = rand_inputs(seed, n, T, d)
    if token:
        y = X.argmax(-1) % n_classes
    else:
        y = X.sum(1).argmax(-1) % n_classes
    return X, y


def _net(d=3, c=3, **kw):
    kw.setdefault("hidden_widths", [16, 16])
    return small_net(d, c, **kw)


def _weights(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


# ------------------------------------------------------------------------------------ learning
@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sg_learns_first_last_xor_T4(seed):
    # Two LIF layers (depth 3) of 32 neurons, default leak 0.99 / threshold 1 / subtract reset.
    # init_scale=2 puts enough input current on the first layer for neurons to fire on a single
    # step, so the first symbol leaves a trace (membrane / spike timing) that survives to step 4.
    # Checked on 10 seeds: 100% test accuracy on all, typically reached after 30-90 epochs.
    d = load_task("xor", T=4, seed=seed, n_train=500, n_val=500, n_test=2000, ood_lengths=())
    net = ParallelSNN(2, 2, depth=3, p_rec=32, p_last=32, init_scale=2.0, seed=seed)
    res = train_surrogate(
        net, d.train.X, d.train.y, d.val.X, d.val.y, epochs=150, lr=1e-2, seed=seed, progress=False
    )
    assert evaluate_accuracy(net, d.test.X, d.test.y) >= 0.95
    assert res.best_val_acc >= 0.95


# ------------------------------------------------------------------------------------- seeding
def test_same_seed_identical_weights_different_seed_differs():
    X, y = _data(n=40)
    runs = []
    for seed in (3, 3, 4):
        net = _net()
        train_surrogate(net, X, y, epochs=3, batch_size=8, seed=seed, progress=False)
        runs.append(_weights(net))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert any(not torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_global_rng_untouched():
    X, y = _data(n=24)
    state = torch.random.get_rng_state()
    np_state = np.random.get_state()[1].copy()
    train_surrogate(_net(), X, y, epochs=2, batch_size=8, progress=False)
    assert torch.equal(state, torch.random.get_rng_state())
    assert np.array_equal(np_state, np.random.get_state()[1])


# ------------------------------------------------------------------------- best-epoch restore
def _scramble_at(epoch_to_hit):
    def cb(epoch, record, model):
        if epoch == epoch_to_hit:  # wreck the weights: no spikes, all scores 0 from now on
            with torch.no_grad():
                for w in model.weights:
                    w.zero_()

    return cb


@pytest.mark.parametrize("restore", [True, False])
def test_best_validation_state_is_restored(restore):
    X, y = _data(n=64, seed=0)
    Xv, yv = _data(n=64, seed=1)
    net = _net()
    res = train_surrogate(
        net,
        X,
        y,
        Xv,
        yv,
        epochs=12,
        lr=2e-2,
        restore_best=restore,
        callback=_scramble_at(9),
        progress=False,
    )
    va = res.history["val_acc"]
    assert res.best_epoch <= 9 and va[-1] < res.best_val_acc
    assert res.best_val_acc == max(va)
    assert va[res.best_epoch] == res.best_val_acc
    # ties on accuracy are broken by the lower validation loss
    tied = [i for i, a in enumerate(va) if a == max(va)]
    assert res.history["val_loss"][res.best_epoch] == min(res.history["val_loss"][i] for i in tied)
    acc_now = evaluate_accuracy(net, Xv, yv)
    if restore:
        assert res.restored_best
        assert acc_now == res.best_val_acc
        loss_now = evaluate(net, Xv, yv)["loss"]
        assert loss_now == pytest.approx(res.best_val_loss, rel=1e-6)
    else:
        assert not res.restored_best
        assert acc_now == va[-1]


def test_no_validation_keeps_final_weights_and_result_is_json_safe():
    X, y = _data(n=32)
    res = train_surrogate(_net(), X, y, epochs=3, progress=False)
    assert isinstance(res, TrainResult)
    assert res.best_epoch is None and res.best_val_acc is None and not res.restored_best
    assert res.epochs_run == 3 and not res.stopped_early and res.stop_reason == "completed"
    d = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert d["history"]["val_acc"] == [None] * 3
    assert len(d["history"]["train_loss"]) == 3 and len(d["history"]["seconds"]) == 3
    assert d["settings"]["loss"] == "softmax"


# -------------------------------------------------------------------------------------- losses
def test_loss_definitions():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(7, 4, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2])
    t = -torch.ones(7, 4, dtype=torch.float64)
    t[torch.arange(7), y] = 1
    assert torch.allclose(softmax_loss(z, y), F.cross_entropy(z, y, reduction="none"))
    assert torch.allclose(hinge_loss(z, y), torch.clamp(1 - t * z, min=0).sum(1))
    assert torch.allclose(squared_loss(z, y), 0.5 * ((z - t) ** 2).sum(1))
    # one column: binary labels, +-1 targets, logistic = softmax over (0, z)
    z1, y1 = z[:, :1], torch.tensor([0, 1, 1, 0, 1, 0, 0])
    s = 2.0 * y1 - 1
    two = torch.cat([torch.zeros_like(z1), z1], 1)
    assert torch.allclose(softmax_loss(z1, y1), F.cross_entropy(two, y1, reduction="none"))
    assert torch.allclose(hinge_loss(z1, y1), torch.clamp(1 - s * z1[:, 0], min=0))
    assert torch.allclose(squared_loss(z1, y1), 0.5 * (z1[:, 0] - s) ** 2)
    w = torch.rand(7, generator=g, dtype=torch.float64)
    assert torch.allclose(datafit("hinge", z, y, w), (w * hinge_loss(z, y)).mean())
    with pytest.raises(ValueError, match="loss"):
        datafit("logistic", z, y)


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_each_loss_decreases(loss):
    X, y = _data(n=48)
    net = _net()
    res = train_surrogate(net, X, y, loss=loss, epochs=25, lr=2e-2, progress=False)
    tl = res.history["train_loss"]
    assert all(np.isfinite(tl))
    assert tl[-1] < 0.8 * tl[0]


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_single_output_column_binary(loss):
    X, y = _data(n=40, n_classes=2)
    net = _net(c=1)
    res = train_surrogate(net, X, y, X, y, loss=loss, epochs=15, lr=2e-2, progress=False)
    assert res.history["train_loss"][-1] < res.history["train_loss"][0]
    pred = net.predict(X)
    assert evaluate_accuracy(net, X, y) == pytest.approx(float((pred == y).float().mean()))


def test_class_weight_and_path_norm():
    X, y = _data(n=48)
    base = evaluate(_net(), X, y)["loss"]
    w = evaluate(_net(), X, y, class_weight=[1.0, 0.0, 0.0])["loss"]
    assert 0 < w < base
    bal = train_surrogate(_net(), X, y, epochs=2, class_weight="balanced", progress=False)
    assert len(bal.settings["class_weight"]) == 1
    plain, reg = _net(), _net()
    train_surrogate(plain, X, y, epochs=10, lr=2e-2, progress=False)
    train_surrogate(reg, X, y, epochs=10, lr=2e-2, path_norm=1e-2, progress=False)
    with torch.no_grad():
        assert float(reg.path_norm()) < float(plain.path_norm())


# ------------------------------------------------------------------------------------- layouts
def test_token_mode_runs_and_learns():
    X, y = _data(n=32, T=6, token=True)
    net = _net(output="all")
    res = train_surrogate(net, X, y, X, y, label_mode="token", epochs=20, lr=2e-2, progress=False)
    assert res.history["train_loss"][-1] < res.history["train_loss"][0]
    with torch.no_grad():
        pred = net(X).argmax(-1)
    acc = evaluate_accuracy(net, X, y, label_mode="token")
    assert acc == pytest.approx(float((pred == y).float().mean()))
    assert res.best_val_acc == max(res.history["val_acc"])


def test_sequence_labels_on_all_step_model_read_last_step():
    X, y = _data(n=24)
    net = _net(output="all")
    with torch.no_grad():
        pred = net(X)[:, -1].argmax(-1)
    assert evaluate_accuracy(net, X, y) == pytest.approx(float((pred == y).float().mean()))


def test_multi_head_addition():
    d = load_task("addition", base=3, n_digits=3, n_train=64, n_val=32, n_test=32, ood_n_digits=())
    heads = list(d.n_classes)
    assert d.train.y.ndim == 3 and heads == [3, 2]
    net = ParallelSNN(3, sum(heads), hidden_widths=[16, 16], init_scale=3.0, output="all", seed=0)
    res = train_surrogate(
        net,
        d.train.X,
        d.train.y,
        d.val.X,
        d.val.y,
        label_mode="token",
        heads=heads,
        epochs=15,
        lr=2e-2,
        class_weight="balanced",
        progress=False,
    )
    assert res.history["train_loss"][-1] < res.history["train_loss"][0]
    with torch.no_grad():
        z = net(d.test.X)
    ok = (z[..., :3].argmax(-1) == d.test.y[..., 0]) & (z[..., 3:].argmax(-1) == d.test.y[..., 1])
    acc = evaluate_accuracy(net, d.test.X, d.test.y, label_mode="token", heads=heads)
    assert acc == pytest.approx(float(ok.float().mean()))
    assert len(res.settings["class_weight"]) == 2
    with pytest.raises(ValueError, match="heads"):
        evaluate_accuracy(net, d.test.X, d.test.y, label_mode="token", heads=[3, 3])
    with pytest.raises(ValueError, match="y"):
        evaluate_accuracy(net, d.test.X, d.test.y[..., 0], label_mode="token", heads=heads)


# ------------------------------------------------------------------------- stopping / schedule
def test_early_stopping():
    X, y = _data(n=32)
    # lr so small that the weights cannot move: no epoch ever improves on the first
    res = train_surrogate(
        _net(), X, y, X, y, epochs=50, lr=1e-30, early_stopping_patience=3, progress=False
    )
    assert res.stopped_early and res.stop_reason == "early_stopping"
    assert res.epochs_run == 4 and res.best_epoch == 0


def test_lr_decays_on_plateau():
    X, y = _data(n=32)
    # steps of 1e-6 change the loss by far less than the plateau threshold (1e-4 relative)
    res = train_surrogate(
        _net(), X, y, epochs=6, lr=1e-6, lr_patience=1, lr_decay_factor=0.1, progress=False
    )
    assert res.history["lr"][0] == 1e-6
    assert res.history["lr"][-1] == pytest.approx(1e-8)
    fixed = train_surrogate(_net(), X, y, epochs=6, lr=1e-6, lr_patience=None, progress=False)
    assert fixed.history["lr"] == [1e-6] * 6


def test_callback_can_stop():
    X, y = _data(n=16)
    seen = []

    def cb(epoch, record, model):
        seen.append(record)
        return epoch == 1

    res = train_surrogate(_net(), X, y, epochs=10, callback=cb, progress=False)
    assert res.epochs_run == 2 and res.stop_reason == "callback" and res.stopped_early
    assert seen[0]["epoch"] == 0 and "train_loss" in seen[0] and "lr" in seen[0]


def test_progress_bar_and_device(capsys):
    X, y = _data(n=16)
    train_surrogate(_net(), X, y, epochs=2, progress=False, device="cpu")
    assert capsys.readouterr().err == ""
    train_surrogate(_net(), X, y, epochs=2, progress=True)


# ------------------------------------------------------------------------------------- checks
def test_bad_inputs_raise_named_errors():
    X, y = _data(n=20, T=5)
    net = _net()
    kw = dict(epochs=1, progress=False)
    Xnan = X.clone()
    Xnan[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="X_train"):
        train_surrogate(net, Xnan, y, **kw)
    with pytest.raises(ValueError, match="X_train"):
        train_surrogate(net, X[..., :2], y, **kw)
    with pytest.raises(ValueError, match="X_train"):
        train_surrogate(net, X[0], y, **kw)
    with pytest.raises(ValueError, match="y_train"):
        train_surrogate(net, X, torch.full((20,), 3), **kw)  # 3 classes -> labels 0..2
    with pytest.raises(ValueError, match="y_train"):
        train_surrogate(net, X, y[:-1], **kw)
    with pytest.raises(TypeError, match="y_train"):
        train_surrogate(net, X, y + 0.5, **kw)
    with pytest.raises(ValueError, match="X_val"):
        train_surrogate(net, X, y, X[:, :4], y, **kw)
    with pytest.raises(ValueError, match="y_val"):
        train_surrogate(net, X, y, X, torch.full((20,), -1), **kw)
    with pytest.raises(ValueError, match="X_val and y_val"):
        train_surrogate(net, X, y, X, None, **kw)
    with pytest.raises(ValueError, match="loss"):
        train_surrogate(net, X, y, loss="mse", **kw)
    with pytest.raises(ValueError, match="epochs"):
        train_surrogate(net, X, y, epochs=0, progress=False)
    with pytest.raises(TypeError, match="epochs"):
        train_surrogate(net, X, y, epochs=2.5, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        train_surrogate(net, X, y, batch_size=0, **kw)
    with pytest.raises(ValueError, match="lr"):
        train_surrogate(net, X, y, lr=-1.0, **kw)
    with pytest.raises(ValueError, match="lr_decay_factor"):
        train_surrogate(net, X, y, lr_decay_factor=1.5, **kw)
    with pytest.raises(ValueError, match="label_mode"):
        train_surrogate(net, X, y, label_mode="tokens", **kw)
    with pytest.raises(ValueError, match="label_mode"):  # token labels need output="all"
        train_surrogate(net, X, y[:, None].expand(20, 5), label_mode="token", **kw)
    with pytest.raises(ValueError, match="class_weight"):
        train_surrogate(net, X, y, class_weight=[1.0, 2.0], **kw)
    with pytest.raises(TypeError, match="model"):
        train_surrogate(torch.nn.Linear(2, 2), X, y, **kw)
    with pytest.raises(TypeError, match="callback"):
        train_surrogate(net, X, y, callback=3, **kw)


# ---------------------------------------------------------------------------------- fine-tuning
def test_finetune_keeps_the_copy_only_if_validation_does_not_drop():
    from convexsnn.train import finetune

    X, y = _data(n=32, seed=0)
    Xv, yv = _data(n=32, seed=1)
    start = _net(hidden_widths=[8])
    for p in start.parameters():  # like a reconstructed network: frozen parameters
        p.requires_grad_(False)
    w0 = _weights(start)
    ft = finetune(start, X, y, Xv, yv, epochs=2, lr=2e-2, seed=0)
    assert all(torch.equal(w0[k], v) for k, v in start.state_dict().items())  # untouched
    assert ft.val_before == evaluate_accuracy(start, Xv, yv)
    assert ft.kept_finetuned == (ft.val_after >= ft.val_before)
    assert (ft.model is not start) == ft.kept_finetuned
    if ft.kept_finetuned:
        assert evaluate_accuracy(ft.model, Xv, yv) == ft.val_after
        assert all(p.requires_grad for p in ft.model.parameters())
    assert ft.result.epochs_run == 2
    # a negligible learning rate changes no spike: validation equal, so the copy is kept
    same = finetune(start, X, y, Xv, yv, epochs=1, lr=1e-12, seed=0)
    assert same.val_after == same.val_before and same.kept_finetuned and same.model is not start


def test_pm1_targets_are_the_convex_side_targets():
    from convexsnn.convex import labels_to_targets

    y = torch.tensor([0, 2, 1, 2])
    z3 = torch.zeros(4, 3)
    assert torch.equal(squared_loss(z3, y), 0.5 * labels_to_targets(y, 3).pow(2).sum(1).float())
    z1 = torch.zeros(2, 1, dtype=torch.float64)
    yb = torch.tensor([0, 1])
    assert torch.equal(hinge_loss(z1 + 0.5, yb), torch.tensor([1.5, 0.5], dtype=torch.float64))
