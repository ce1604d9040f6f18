r"""Whether numba's just-in-time compiler can run in this process.

LLVM reserves address space to compile a kernel or to load one from numba's on-disk cache. Under
a per-process address-space limit (``ulimit -v``, ``RLIMIT_AS``, as batch schedulers set) with
too little left, it does not raise: it aborts the process (``LLVM ERROR: out of memory``,
``Buffer allocation failed``). Measured on the coordinate-descent kernels: aborts with 128 MiB of
headroom, compiles with 256 MiB. The compiled paths ask :func:`jit_blocked` first and, when it
gives a reason, use their pure-Python / torch fallbacks (same results, slower) and log it.
"""

from __future__ import annotations

import logging

#: address space left under ``RLIMIT_AS`` below which numba is not used (twice the measured need)
JIT_HEADROOM = 512 * 2**20

__all__ = ["JIT_HEADROOM", "jit_blocked", "load_numba"]


def _vm_bytes() -> int | None:
    """Virtual memory size of this process (Linux ``/proc/self/statm``), None if unknown."""
    import resource

    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return None


def jit_blocked() -> str | None:
    """Why numba must not compile here (``None``: it may).

    A reason is given when an address-space limit is set and leaves less than
    :data:`JIT_HEADROOM` above the current virtual size (or the size cannot be read).
    """
    try:
        import resource
    except ImportError:  # not a POSIX system: no RLIMIT_AS
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    vm = _vm_bytes()
    if vm is None:
        return "an address-space limit is set and this process's size cannot be read"
    left = soft - vm
    if left < JIT_HEADROOM:
        return (
            f"the address-space limit leaves {max(left, 0) / 2**20:.0f} MiB, less than the "
            f"{JIT_HEADROOM / 2**20:.0f} MiB numba's compiler may need"
        )
    return None


def log_fallback(what: str, reason: str) -> None:
    """One warning naming the slower path taken and why."""
    logging.getLogger("convexsnn").warning("%s without numba: %s", what, reason)


def load_numba(what: str):
    """The ``numba`` module when it may compile here, else ``None`` after one warning (through
    :func:`log_fallback`) naming the slower path ``what`` and the reason: an address-space limit
    (:func:`jit_blocked`) or an import that fails (e.g. LLVM cannot be mapped under a memory cap).
    """
    reason = jit_blocked()
    if reason is None:
        try:
            import numba
        except (ImportError, OSError) as exc:
            reason = str(exc)
        else:
            return numba
    log_fallback(what, reason)
    return None
