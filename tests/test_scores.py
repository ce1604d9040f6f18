"""The prediction rule with ties (convexsnn._scores), written from its definition.

A score whose exact value is 0 (one column) or an exact two-way tie (arg-max) may come out of
floating point on either side depending on the summation order. The rule treats every score within
the rounding bound ``tau = n eps max_c sum_j |r_j W_jc|`` of a tie as that tie, so the network and
the convex readout, which sum in different orders, predict the same class.
"""

from __future__ import annotations

import pytest
import torch

from convexsnn import ParallelSNN
from convexsnn._scores import classes_from_scores, score_tolerance
from convexsnn.convex import ReadoutSolution

# one exact zero, summed in two orders: 0.1 + 0.2 - 0.3 > 0 but 0.3 - 0.1 - 0.2 < 0 in float64
ORDER_A = [0.1, 0.2, -0.3]
ORDER_B = [0.3, -0.1, -0.2]


def _seq_sum(ws):
    total = 0.0
    for w in ws:
        total += w
    return total


def test_the_constructed_tie_rounds_to_opposite_signs():
    # the premise of the other tests: the plain "> 0" rule disagrees between the two orders
    za, zb = _seq_sum(ORDER_A), _seq_sum(ORDER_B)
    assert za > 0 > zb
    plain = [
        int(classes_from_scores(torch.tensor([[z]], dtype=torch.float64))[0]) for z in (za, zb)
    ]
    assert plain == [1, 0]


def test_single_column_tie_predicts_class_0_in_either_order():
    r = torch.ones(1, 3, dtype=torch.float64)
    for ws in (ORDER_A, ORDER_B):
        W = torch.tensor(ws, dtype=torch.float64)[:, None]
        tol = score_tolerance(r, W)
        assert tol.shape == (1,)
        assert float(tol[0]) == pytest.approx(3 * torch.finfo(torch.float64).eps * 0.6, rel=1e-12)
        z = torch.tensor([[_seq_sum(ws)]], dtype=torch.float64)
        assert int(classes_from_scores(z, tol)[0]) == 0
    # a score clearly above the band stays class 1, clearly below stays class 0
    tol = torch.tensor([1e-12], dtype=torch.float64)
    assert classes_from_scores(torch.tensor([[2e-12], [-2e-12], [0.0]]), tol).tolist() == [1, 0, 0]


def test_two_way_tie_goes_to_the_lower_class_in_either_order():
    r = torch.ones(1, 3, dtype=torch.float64)
    plain = []
    for ws in (ORDER_A, ORDER_B):
        # class 1 sums to an exact 0 (rounded either way), class 2 is exactly 0, class 0 is lower
        W = torch.zeros(3, 3, dtype=torch.float64)
        W[:, 0] = -1.0
        W[:, 1] = torch.tensor(ws, dtype=torch.float64)
        z = torch.tensor([[-3.0, _seq_sum(ws), 0.0]], dtype=torch.float64)
        plain.append(int(classes_from_scores(z)[0]))
        assert int(classes_from_scores(z, score_tolerance(r, W))[0]) == 1
    assert plain == [1, 2]  # the plain arg-max follows the rounding
    # a real gap above 2 tol still wins
    z = torch.tensor([[0.0, 1.0, 1.0 + 1e-9]], dtype=torch.float64)
    assert int(classes_from_scores(z)[0]) == 2
    assert int(classes_from_scores(z, torch.tensor([1e-12], dtype=torch.float64))[0]) == 2
    assert int(classes_from_scores(z, torch.tensor([1e-9], dtype=torch.float64))[0]) == 1


def test_network_and_convex_readout_agree_on_a_constructed_tie():
    torch.manual_seed(0)
    net = ParallelSNN(
        2, 1, n_branches=1, depth=2, p_rec=6, p_last=6, seed=0, dtype=torch.float64, init_scale=4.0
    )
    x = torch.ones(4, 5, 2, dtype=torch.float64)
    r = net.features(x)[:, -1]  # (4, 6) spikes at the last step
    active = torch.nonzero(r[0] > 0)[:, 0]
    assert active.numel() >= 3, "test premise: three last-layer neurons spike on the input"
    a = active[:3]
    with torch.no_grad():
        net.output_weight.zero_()
        net.output_weight[a, 0] = torch.tensor(ORDER_A, dtype=torch.float64)
    # the network's own arithmetic, whatever its sign, and the convex readout over the same
    # columns in the other order both predict class 0
    assert int(net.predict(x)[0]) == 0
    D = r[:, a.flip(0)]  # columns in another order
    W = net.output_weight[a.flip(0)].detach().clone()
    sol = ReadoutSolution(W=W, certificate=None)
    assert sol.predict(D).tolist() == net.predict(x).tolist()
