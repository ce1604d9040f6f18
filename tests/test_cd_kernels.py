"""The small dense solve inside the compiled coordinate descent (no LAPACK call from numba)."""

import numpy as np

from convexsnn.convex import _cd_numba


def test_spd_solve_matches_the_normal_equations_and_refuses_indefinite():
    rng = np.random.default_rng(0)
    for K in (1, 2, 5):
        A = rng.standard_normal((K + 3, K))
        M = A.T @ A + 1e-3 * np.eye(K)
        rhs = np.ones(K)
        for solve in (_cd_numba._spd_solve_py, _cd_numba._spd_solve):
            z, ok = solve(M, rhs)
            assert ok
            np.testing.assert_allclose(M @ z, rhs, rtol=1e-9, atol=1e-9)
    # not positive definite: refused (the Anderson step is then skipped), never a crash
    z, ok = _cd_numba._spd_solve_py(np.array([[1.0, 2.0], [2.0, 1.0]]), np.ones(2))
    assert not ok


def test_compiled_kernels_do_not_link_lapack():
    _cd_numba._compile()
    if not _cd_numba._COMPILED:  # numba unavailable: the pure-Python path has nothing to check
        return
    z, ok = _cd_numba._spd_solve(np.array([[4.0]]), np.array([2.0]))
    assert ok and z[0] == 0.5
    for kernel in (_cd_numba._spd_solve, _cd_numba._anderson, _cd_numba._cd_sweeps):
        for sig in kernel.signatures:
            assert "lapack" not in kernel.inspect_llvm(sig).lower()


def test_jit_is_refused_under_a_tight_address_space_limit():
    # LLVM aborts the process (no exception) when it cannot reserve address space; the compiled
    # paths must see the limit first and take their fallbacks. Run in a child with the limit set.
    import subprocess
    import sys

    code = (
        "import resource, torch\n"
        "from convexsnn._jit import jit_blocked, _vm_bytes\n"
        "from convexsnn.convex import solve_readout\n"
        "from convexsnn.convex import _cd_numba\n"
        "assert jit_blocked() is None or 'limit' in jit_blocked()\n"
        "cap = _vm_bytes() + 64 * 2**20\n"
        "resource.setrlimit(resource.RLIMIT_AS, (cap, resource.RLIM_INFINITY))\n"
        "assert 'address-space limit' in jit_blocked()\n"
        "g = torch.Generator().manual_seed(0)\n"
        "D = (torch.rand(200, 40, generator=g) < 0.3).double()\n"
        "s = solve_readout(D, torch.arange(200) % 2, loss='squared', lam=1e-3, tol=1e-8)\n"
        "assert s.certificate.converged and not _cd_numba._COMPILED\n"
        "print('ok')\n"
    )
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    import os

    env.update({k: v for k, v in os.environ.items() if k in ("PYTHONPATH", "HOME")})
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]
