"""The authors' SG protocol of the XOR experiment (convexsnn.experiments.xor.tune_sg).

Learning rate chosen on validation from a grid, early stopping, best epoch restored; retraining
with the chosen (lr, epochs) must give back the chosen network, since the SG-CVX / SG->SG methods
of a tuned cell are built on that retrained network.
"""

from __future__ import annotations

import pytest
import torch

from convexsnn.experiments.xor import FULL_CONFIG, tune_sg
from convexsnn.pipelines import run_methods
from convexsnn.tasks import load_task

CONFIG = {
    **FULL_CONFIG,
    "depth": 3,
    "sg_n_branches": 1,
    "sg_p_rec": 8,
    "sg_p_last": 8,
    "eval_batch_size": 256,
}


@pytest.mark.slow
def test_tune_sg_picks_the_best_validation_lr_and_retraining_reproduces_it():
    torch.set_num_threads(1)
    task = load_task("xor", T=4, n_train=200, n_val=200, n_test=200, ood_lengths=(), seed=0)
    t = tune_sg(task, CONFIG, seed=0, lrs=(1e-3, 5e-2), max_epochs=8, patience=2)
    assert [g["lr"] for g in t["grid"]] == [1e-3, 5e-2]
    best = max(t["grid"], key=lambda g: (g["best_val_acc"], -g["best_val_loss"], -g["lr"]))
    assert t["lr"] == best["lr"] and t["best_val_acc"] == best["best_val_acc"]
    assert t["epochs"] == best["best_epoch"] + 1
    for g in t["grid"]:
        assert g["epochs_run"] <= 8
        assert g["stop_reason"] in ("completed", "early_stopping")
        if g["stop_reason"] == "early_stopping":
            assert g["epochs_run"] == g["best_epoch"] + 1 + 2
    rec = run_methods(
        ["SG"], task, config={**CONFIG, "sg_lr": t["lr"], "sg_epochs": t["epochs"]}, seed=0
    )[0]
    assert rec["val_accuracy"] == t["best_val_acc"]
