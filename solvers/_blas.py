"""One BLAS thread inside the kernels.

Numba's ``np.dot`` calls SciPy's OpenBLAS (``scipy.linalg.cython_blas``); the kernels use it for
the stage-end value update (dgemv, about 24 GB/s here at S = 2000) and for block evaluations
(dgemm). Left at its default
thread count, OpenBLAS wakes its threads for every small product in the kernels' loops: measured
here (2 cores) one evaluation of an S = 200, A = B = 4 game took 110 ms with 2 BLAS threads and
under 1 ms with one. The kernels are single-threaded by design (parallelism comes from Ray), so
they pin BLAS to one thread for the duration of a call -- except on large dense games
(:func:`kernel_blas`), where every product streams tens of MB and the process's BLAS threads (one
in a 1-CPU Ray worker, whose ``OMP_NUM_THREADS`` Ray sets; all cores in a plain process) share the
memory-bound matrix products.
"""

from __future__ import annotations

import contextlib

from threadpoolctl import ThreadpoolController

_controller: ThreadpoolController | None = None


def single_threaded_blas():
    """Context manager limiting every loaded BLAS to one thread (about 15 us to enter)."""
    global _controller
    if _controller is None:
        # load the library Numba calls before inspecting it; here, not at import (SciPy's linalg adds
        # ~17 MB to processes that never run a dense kernel, such as a sparse solve)
        import scipy.linalg.cython_blas  # noqa: F401

        _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")


#: Per-step dense products with at least this many entries (S*A*B*S: 64 MB of float64) keep the
#: process's BLAS threads (docs/benchmarks.md, Algorithm 1 case C).
LARGE_PRODUCT_ENTRIES = 8_000_000


def kernel_blas(entries_per_product: int):
    """The BLAS threading for a kernel call whose dense products have ``entries_per_product`` entries:
    one thread (:func:`single_threaded_blas`) below :data:`LARGE_PRODUCT_ENTRIES`, the process default above."""
    if entries_per_product >= LARGE_PRODUCT_ENTRIES:
        return contextlib.nullcontext()
    return single_threaded_blas()


def thread_budget() -> int:
    """Threads a kernel may use: Numba's thread count, capped by ``OMP_NUM_THREADS`` when it is set
    (Ray sets it to a worker's CPUs, so a 1-CPU trial never runs parallel kernels beside other trials)."""
    import os

    import numba

    n = numba.get_num_threads()
    omp = os.environ.get("OMP_NUM_THREADS", "")
    return min(n, int(omp)) if omp.isdigit() and int(omp) > 0 else n
