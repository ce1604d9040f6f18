"""Fuzz ``ParallelSNN.load`` and ``convexsnn evaluate`` with random bytes and random JSON: every
input gets a clear error (ValueError / FileNotFoundError from the library, one line and exit 1
from the command line), never a traceback from deep inside numpy, torch or json. Seeded and
bounded, so the test is reproducible and takes a few seconds."""

from __future__ import annotations

import io
import json
import random
import zipfile

import numpy as np
import pytest

from convexsnn import ParallelSNN
from convexsnn.cli import main

N_ITER = 60


def _random_json(rng: random.Random, depth: int = 0):
    kind = rng.randrange(9 if depth < 4 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, 1, -1, 2**31, 2**63, 10**30, rng.randrange(-5, 300)])
    if kind == 3:
        return rng.choice([0.5, -1e308, 1e-320, float(rng.random())])
    if kind == 4:
        return rng.choice(["", "x", "float32", "float64", "spike", "dense", "../..", "\u00e9"])
    if kind in (5, 6):
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = [
        "format",
        "format_version",
        "config",
        "shapes",
        "weights_sha256",
        "extra",
        "meta_sha256",
        "n_inputs",
        "n_outputs",
        "hidden_widths",
        "leak",
        "dtype",
        "task_spec",
        "n_branches",
        "recurrent",
        "surrogate_params",
    ]
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randrange(5))}


def _reseal(meta: dict) -> dict:
    import hashlib

    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    meta["meta_sha256"] = hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    return meta


def _mutated_config(rng: random.Random, good: dict) -> dict:
    meta = json.loads(json.dumps(good))
    target = meta if rng.random() < 0.4 else meta["config"]
    key = rng.choice(sorted(target))
    if rng.random() < 0.3:
        del target[key]
    else:
        target[key] = _random_json(rng)
    return meta


def _cases(tmp_path, n_iter: int):
    """(path, description) of random model files: raw bytes, random JSON configs, mutated
    valid configs, and zip archives with random members."""
    rng = random.Random(1234)
    good_dir = ParallelSNN(2, 2, n_branches=2, depth=2, p_last=4, seed=0).save(tmp_path / "g")
    good = json.loads((good_dir / "config.json").read_text())
    weights = (good_dir / "weights.npz").read_bytes()
    for i in range(n_iter):
        kind = i % 4
        if kind == 0:
            p = tmp_path / f"bytes{i}.npz"
            p.write_bytes(rng.randbytes(rng.randrange(0, 400)))
            if rng.random() < 0.3:  # a zip signature in front of garbage
                p.write_bytes(b"PK\x03\x04" + p.read_bytes())
        elif kind in (1, 2):
            p = tmp_path / f"dir{i}"
            p.mkdir()
            meta = _random_json(rng) if kind == 1 else _mutated_config(rng, good)
            if kind == 2 and isinstance(meta, dict) and rng.random() < 0.6:
                _reseal(meta)  # a crafted file with a valid checksum
            (p / "config.json").write_text(json.dumps(meta))
            (p / "weights.npz").write_bytes(weights if rng.random() < 0.7 else rng.randbytes(64))
        else:
            p = tmp_path / f"zip{i}.npz"
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as z:
                for name in rng.sample(
                    ["__meta__.npy", "__weights__.npy", "X.npy", "a"], rng.randrange(1, 4)
                ):
                    z.writestr(name, rng.randbytes(rng.randrange(0, 200)))
            p.write_bytes(buf.getvalue())
        yield p


def test_fuzz_load_gives_a_clear_error(tmp_path):
    n_loaded = 0
    for path in _cases(tmp_path, N_ITER):
        try:
            net = ParallelSNN.load(path)
        except (ValueError, FileNotFoundError) as exc:
            msg = str(exc)
            assert msg and "\n" not in msg.strip() and "allow_pickle" not in msg, (path, msg)
            assert str(path) in msg, msg  # the message names the file
        else:
            # only a resealed mutation that still describes a valid network may load; it runs
            n_loaded += 1
            x = np.zeros((1, 2, net.config["n_inputs"]), np.float32)
            assert np.isfinite(net(x).detach().numpy()).all()
    assert n_loaded < N_ITER // 4


def test_fuzz_evaluate_gives_one_line(tmp_path, capsys):
    for path in list(_cases(tmp_path, N_ITER // 2)):
        assert main(["evaluate", str(path), "-q"]) == 1, path
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("convexsnn: error: "), (path, err)
        assert "Traceback" not in err[0] and "allow_pickle" not in err[0]


def test_fuzz_valid_model_with_random_task_spec(tmp_path, capsys):
    """Random ``extra.task_spec`` in a correctly sealed file: evaluate refuses it clearly or
    evaluates an allow-listed task; it never reads paths or opens sockets."""
    import socket

    rng = random.Random(99)
    orig = socket.socket.connect
    socket.socket.connect = lambda *a, **k: pytest.fail("network access")  # type: ignore
    try:
        for i in range(12):
            spec = _random_json(rng)
            if i % 3 == 0:
                spec = {
                    "kind": "task",
                    "name": rng.choice(["xor", "mnist", "parity-2", "zz"]),
                    "options": _random_json(rng),
                }
            path = ParallelSNN(2, 2, n_branches=1, depth=2, p_last=4, seed=0).save(
                tmp_path / f"m{i}", extra={"task_spec": spec}
            )
            rc = main(["evaluate", str(path), "-q", "--mnist-dir", str(tmp_path / "none")])
            out = capsys.readouterr()
            if rc == 1:
                assert len(out.err.strip().splitlines()) == 1, (spec, out.err)
            else:
                assert rc == 0 and json.loads(out.out)["value"] is not None
    finally:
        socket.socket.connect = orig  # type: ignore
