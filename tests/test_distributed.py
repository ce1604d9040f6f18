"""Sharded solves on torch.distributed (2 gloo processes on loopback) against one process.

The sharded operator and solve are checked against the in-memory dictionary: products, column
restriction, densification, the sharded dual norm (``all_reduce(MAX)``) and top-k (``all_gather``)
from their definitions; the sharded solve of every (loss, penalty) pair against the
single-process solve (same optimum within the certified gaps, and the sharded certificate
recomputed on the whole dictionary in one process).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.distributed as dist

from convexsnn.convex import lambda_max, make_penalty, solve_readout
from convexsnn.convex.solver import prepare_problem
from convexsnn.dictionary import build_dictionary
from convexsnn.distributed import (
    ShardedSpikeOperator,
    column_blocks,
    run_local,
    shard_columns,
    solve_readout_sharded,
)
from convexsnn.tasks import load_task
from convexsnn.witnesses import gaussian_witnesses

COMBOS = [(loss, pen) for loss in ("squared", "hinge", "softmax") for pen in ("l1", "l21")]
TOL = 1e-9  # both certified gaps <= 1e-9 relative, so the primal values agree to 1e-9


def _data():
    """FIRST-LAST-XOR (T = 6) and 48 Gaussian witness branches, the same on every rank."""
    torch.set_num_threads(1)
    task = load_task("xor", T=6, n_train=300, n_val=20, n_test=20, seed=0)
    X, y = task.train.X, task.train.y
    w = gaussian_witnesses(X.shape[2], n_branches=48, hidden_widths=[8, 8], seed=0, scale=2.0)
    return X, y, w


def _problem():
    """A small real spike dictionary (deduplicated) and its labels."""
    X, y, w = _data()
    return build_dictionary(w, X).matrix(torch.float64), y


BLOCKS = [list(range(30)), list(range(30, 48))]  # witness branches built by each rank


def _block_products(P: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    return (
        torch.randn(P, 2, generator=gen, dtype=torch.float64),
        torch.randn(300, 2, generator=gen, dtype=torch.float64),
    )


def _beta(D, y, loss, pen):
    """0.8 beta_max: a non-zero solution that every solver certifies to 1e-9 in ~1000 steps."""
    return 0.8 * lambda_max(D, y, loss=loss, penalty=pen) * math.sqrt(D.shape[1])


def _rank_body(rank: int, world: int, tmp: str) -> dict:
    D, y = _problem()
    P = D.shape[1]
    out: dict = {"rank": rank}
    # -- the operator on uneven blocks, one rank holding nothing --------------------------
    op0 = shard_columns(D, blocks=[(0, 0), (0, P)])
    gen = torch.Generator().manual_seed(1)
    W = torch.randn(P, 3, generator=gen, dtype=torch.float64)
    R = torch.randn(D.shape[0], 3, generator=gen, dtype=torch.float64)
    idx = torch.tensor([P - 1, 0, 5, P // 2, 7])
    op = shard_columns(D)
    sub = op.columns(idx)
    pen = make_penalty("l21")
    out["ops"] = {
        "matmul": op.matmul(W).numpy(),
        "rmatmul": op.rmatmul(R).numpy(),
        "matmul_empty_rank": op0.matmul(W).numpy(),
        "rmatmul_empty_rank": op0.rmatmul(R).numpy(),
        "sub_dense": sub.dense().numpy(),
        "sub_matmul": sub.matmul(W[:5]).numpy(),
        "sub_rmatmul": sub.rmatmul(R).numpy(),
        "dense": op.dense().numpy(),
        "sub_counts": sub.counts,
        "counts": op.counts,
        "dual_norm": op.dual_norm(R, pen),
        "top": [t.numpy() for t in op.top_columns(R, pen, 6)],
    }
    # -- each rank builds the dictionary of its witness block (packed bits) -------------
    X, _, w = _data()
    blk = build_dictionary(w, X, branches=BLOCKS[rank], storage="packed", allow_empty=True)
    opb = ShardedSpikeOperator.from_local(blk)
    Wb, Rb = _block_products(opb.shape[1])
    out["blocks"] = {
        "counts": opb.counts,
        "matmul": opb.matmul(Wb).numpy(),
        "rmatmul": opb.rmatmul(Rb).numpy(),
    }
    # -- inputs that differ between ranks: one clear error on every rank ------------------
    y_bad = y.clone()
    if rank == 1:
        y_bad[0] = 1 - y_bad[0]
    try:
        solve_readout_sharded(op, y_bad, loss="squared", reg=0.5)
        out["mismatch_error"] = None
    except ValueError as exc:
        out["mismatch_error"] = str(exc)
    # -- the solves ----------------------------------------------------------------------
    sols = {}
    for loss, pen_name in COMBOS:
        s = solve_readout_sharded(
            op, y, loss=loss, penalty=pen_name, reg=_beta(D, y, loss, pen_name), tol=TOL
        )
        sols[(loss, pen_name)] = {
            "cert": s.certificate.to_dict(),
            "W": s.W.numpy(),
            "U": s.dual.numpy(),
            "lam": s.lam,
        }
    out["solves"] = sols
    # -- the torchrun entry point (the group is already set up; main closes it) -----------
    from convexsnn.distributed.launch import main

    args = [
        "--dictionary",
        f"{tmp}/D.npy",
        "--targets",
        f"{tmp}/y.npy",
        "--loss",
        "hinge",
        "--penalty",
        "l1",
        "--reg",
        str(_beta(D, y, "hinge", "l1")),
        "--tol",
        "1e-9",
        "--out",
        f"{tmp}/run",
    ]
    out["launch_rc"] = main(args)
    out["initialized_after_launch"] = dist.is_initialized()
    try:
        main(args)
        out["launch_again"] = None
    except SystemExit as exc:
        out["launch_again"] = str(exc)
    return out


@pytest.fixture(scope="module")
def launch_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("launch")
    D, y = _problem()
    np.save(tmp / "D.npy", D.numpy().astype(np.uint8))
    np.save(tmp / "y.npy", y.numpy())
    return tmp


@pytest.fixture(scope="module")
def ranks(launch_dir):
    return run_local(_rank_body, 2, str(launch_dir))


@pytest.fixture(scope="module")
def problem():
    return _problem()


def test_column_blocks_cover_every_column_once():
    for P, k in [(10, 3), (2, 4), (7, 1)]:
        blocks = column_blocks(P, k)
        assert len(blocks) == k and blocks[0][0] == 0 and blocks[-1][1] == P
        assert all(blocks[i][1] == blocks[i + 1][0] for i in range(k - 1))
        sizes = [b - a for a, b in blocks]
        assert max(sizes) - min(sizes) <= 1


def test_operator_without_process_group_is_a_clear_error():
    with pytest.raises(RuntimeError, match="not initialised"):
        shard_columns(np.ones((3, 2), dtype=bool))


@pytest.mark.slow
def test_sharded_products_equal_the_dense_ones(ranks, problem):
    D, _ = problem
    P = D.shape[1]
    gen = torch.Generator().manual_seed(1)
    W = torch.randn(P, 3, generator=gen, dtype=torch.float64)
    R = torch.randn(D.shape[0], 3, generator=gen, dtype=torch.float64)
    idx = torch.tensor([P - 1, 0, 5, P // 2, 7])
    Dn = D.numpy()
    for r in ranks:
        o = r["ops"]
        # the same numbers on every rank, equal to one gemm up to summation order
        np.testing.assert_allclose(o["matmul"], (D @ W).numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(o["matmul"], ranks[0]["ops"]["matmul"])
        np.testing.assert_allclose(o["rmatmul"], (D.T @ R).numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(o["matmul_empty_rank"], (D @ W).numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(
            o["rmatmul_empty_rank"], (D.T @ R).numpy(), rtol=1e-12, atol=1e-12
        )
        np.testing.assert_array_equal(o["dense"], Dn)
        np.testing.assert_array_equal(o["sub_dense"], Dn[:, idx.numpy()])
        np.testing.assert_allclose(o["sub_matmul"], (D[:, idx] @ W[:5]).numpy(), atol=1e-12)
        np.testing.assert_allclose(o["sub_rmatmul"], (D[:, idx].T @ R).numpy(), atol=1e-12)
        assert o["counts"] == [P - P // 2, P // 2]
        # idx = [P-1, 0, 5, P//2, 7]: rank 0 owns 0, 5, 7 (and P//2 when P is odd), rank 1 the rest
        assert sum(o["sub_counts"]) == 5 and o["sub_counts"][0] >= 3
        scores = torch.linalg.vector_norm(D.T @ R, dim=1)
        assert o["dual_norm"] == pytest.approx(float(scores.max()), rel=1e-13)
        top_idx, top_val = o["top"]
        ref = torch.sort(scores, descending=True, stable=True)
        np.testing.assert_array_equal(top_idx, ref.indices[:6].numpy())
        np.testing.assert_allclose(top_val, ref.values[:6].numpy(), rtol=1e-13)


@pytest.mark.slow
def test_witness_blocks_built_per_rank_form_the_concatenated_dictionary(ranks):
    X, _, w = _data()
    parts = [build_dictionary(w, X, branches=b).matrix(torch.float64) for b in BLOCKS]
    D = torch.cat(parts, dim=1)
    Wb, Rb = _block_products(D.shape[1])
    for r in ranks:
        assert r["blocks"]["counts"] == [p.shape[1] for p in parts]
        np.testing.assert_allclose(r["blocks"]["matmul"], (D @ Wb).numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(
            r["blocks"]["rmatmul"], (D.T @ Rb).numpy(), rtol=1e-12, atol=1e-12
        )


@pytest.mark.slow
def test_inputs_differing_between_ranks_are_refused_on_every_rank(ranks):
    for r in ranks:
        assert r["mismatch_error"] is not None
        assert "y differs between ranks" in r["mismatch_error"]


@pytest.mark.slow
@pytest.mark.parametrize("loss,pen", COMBOS)
def test_sharded_solve_gives_the_single_process_optimum_and_certificate(ranks, problem, loss, pen):
    D, y = problem
    beta = _beta(D, y, loss, pen)
    ref = solve_readout(D, y, loss=loss, penalty=pen, reg=beta, tol=TOL)
    c1 = ref.certificate
    got = ranks[0]["solves"][(loss, pen)]
    c2 = got["cert"]
    assert c1.converged and c2["converged"]
    assert c2["info"]["world_size"] == 2 and c2["info"]["sharding"] == "columns"
    assert int((np.abs(got["W"]).sum(axis=1) > 0).sum()) > 0  # a non-trivial readout
    # every rank returns the same readout and certificate
    other = ranks[1]["solves"][(loss, pen)]
    np.testing.assert_array_equal(got["W"], other["W"])
    assert other["cert"]["primal"] == c2["primal"] and other["cert"]["dual"] == c2["dual"]
    # both primal values lie in [p*, p* + gap]: they differ by at most the larger gap
    bound = max(c1.gap, c2["gap"])
    assert abs(c1.primal - c2["primal"]) <= bound * (1 + 1e-9) + 1e-15 * abs(c1.primal)
    assert abs(c1.primal - c2["primal"]) <= 1e-9 * abs(c1.primal)
    assert abs(c1.dual - c2["dual"]) <= 1e-9 * abs(c1.primal)
    # the sharded certificate, recomputed in one process on the whole dictionary
    prep = prepare_problem(D, y, loss=loss, penalty=pen)
    W = torch.from_numpy(got["W"])
    U = torch.from_numpy(got["U"])
    lam = got["lam"]
    primal = float(prep.datafit.value(D @ W) + lam * prep.penalty.value(W))
    dual = float(prep.datafit.dual_value(U, 1.0))
    assert primal == pytest.approx(c2["primal"], rel=1e-12, abs=1e-15)
    assert dual == pytest.approx(c2["dual"], rel=1e-12, abs=1e-15)
    dn = prep.penalty.dual_norm(D.T @ U)
    assert dn <= lam * (1 + 1e-12)
    assert c2["info"]["dual_norm_sharded"] == pytest.approx(dn, rel=1e-13)


@pytest.mark.slow
def test_launcher_writes_the_certified_solution_once(ranks, launch_dir, problem):
    import json

    D, y = problem
    for r in ranks:
        assert r["launch_rc"] == 0 and not r["initialized_after_launch"]
        assert "already holds a solution" in r["launch_again"]
    cert = json.loads((launch_dir / "run" / "certificate.json").read_text())
    W = np.load(launch_dir / "run" / "solution.npz")["W"]
    assert cert["converged"] and cert["info"]["world_size"] == 2
    ref = solve_readout(
        D, y, loss="hinge", penalty="l1", reg=_beta(D, y, "hinge", "l1"), tol=1e-9
    ).certificate
    assert abs(cert["primal"] - ref.primal) <= 1e-9 * abs(ref.primal)
    prep = prepare_problem(D, y, loss="hinge", penalty="l1")
    Wt = torch.from_numpy(W)
    primal = float(prep.datafit.value(D @ Wt) + cert["lam"] * prep.penalty.value(Wt))
    assert primal == pytest.approx(cert["primal"], rel=1e-12)


def test_solve_readout_sharded_refuses_a_plain_operator():
    with pytest.raises(TypeError, match="ShardedSpikeOperator"):
        solve_readout_sharded(np.ones((3, 2), dtype=bool), np.zeros(3))


@pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.device_count() < 1, reason="needs CUDA (nccl)"
)
def test_sharded_solve_on_cuda_with_nccl():  # pragma: no cover - run by benchmarks/gpu_check.sh
    res = run_local(_cuda_body, 1, backend="nccl")
    assert res[0]["converged"] and res[0]["rel"] <= 1e-5


def _cuda_body(rank: int, world: int) -> dict:
    D, y = _problem()
    torch.cuda.set_device(rank)
    op = ShardedSpikeOperator.from_local(D, dtype=torch.float64, device=f"cuda:{rank}")
    s = solve_readout_sharded(op, y, loss="softmax", penalty="l1", reg=0.5, tol=1e-8)
    ref = solve_readout(D, y, loss="softmax", penalty="l1", reg=0.5, tol=1e-8)
    rel = abs(s.certificate.primal - ref.certificate.primal) / abs(ref.certificate.primal)
    return {"converged": s.certificate.converged, "rel": rel}


# -- memory: a dictionary over one process's cap fits when split ---------------------------

CAP_N, CAP_P, CAP_CHUNK = 2000, 16384, 1024  # 262 MB as float64
CAP_MB = 200  # address space allowed beyond the start-up


def _address_space() -> int:
    import resource

    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[0]) * resource.getpagesize()


def _capped_body(rank: int, world: int) -> dict:
    import resource

    resource.setrlimit(
        resource.RLIMIT_AS, (_address_space() + CAP_MB * 2**20, resource.RLIM_INFINITY)
    )
    lo, hi = column_blocks(CAP_P // CAP_CHUNK, world)[rank]  # this rank's chunks of columns
    try:
        D_r = torch.empty(CAP_N, (hi - lo) * CAP_CHUNK, dtype=torch.float64)
    except RuntimeError as exc:  # the allocator's "can't allocate memory"
        return {"fits": False, "error": str(exc)[:200]}
    for k, c in enumerate(range(lo, hi)):  # chunk c is the same whichever rank builds it
        gen = torch.Generator().manual_seed(c)
        D_r[:, k * CAP_CHUNK : (k + 1) * CAP_CHUNK] = (
            torch.rand(CAP_N, CAP_CHUNK, generator=gen) < 0.2
        ).to(torch.float64)
    y = (torch.arange(CAP_N) % 2).to(torch.int64)
    op = ShardedSpikeOperator.from_local(D_r, check_binary=False)
    # lam_max = ||D^T (a * Y)||_inf from the shards (all_reduce(MAX)); solve at 0.7 lam_max
    lam_max = op.dual_norm((2.0 * y - 1.0).to(torch.float64)[:, None] / CAP_N, make_penalty("l1"))
    sol = solve_readout_sharded(op, y, loss="squared", penalty="l1", lam=0.7 * lam_max, tol=1e-6)
    return {
        "fits": True,
        "converged": sol.certificate.converged,
        "support": int(sol.support.numel()),
        "local_columns": op.counts[rank],
    }


@pytest.mark.slow
def test_dictionary_over_one_process_memory_cap_is_solved_on_two():
    assert CAP_N * CAP_P * 8 > CAP_MB * 2**20 > CAP_N * CAP_P * 8 / 2
    one = run_local(_capped_body, 1)
    assert one[0]["fits"] is False, one
    two = run_local(_capped_body, 2)
    for r in two:
        assert r["fits"] and r["converged"] and r["local_columns"] == CAP_P // 2, two
        assert r["support"] > 0
