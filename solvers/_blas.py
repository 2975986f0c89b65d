"""One BLAS thread inside the kernels.

Numba's ``np.dot`` calls SciPy's OpenBLAS (``scipy.linalg.cython_blas``); the kernels use it for
the stage-end value update (dgemv, about 24 GB/s here at S = 2000) and for block evaluations
(dgemm). Left at its default
thread count, OpenBLAS wakes its threads for every small product in the kernels' loops: measured
here (2 cores) one evaluation of an S = 200, A = B = 4 game took 110 ms with 2 BLAS threads and
under 1 ms with one. The kernels are single-threaded by design (parallelism comes from Ray), so
they pin BLAS to one thread for the duration of a call.
"""

from __future__ import annotations

import scipy.linalg.cython_blas  # noqa: F401  (load the library Numba calls before inspecting it)
from threadpoolctl import ThreadpoolController

_controller: ThreadpoolController | None = None


def single_threaded_blas():
    """Context manager limiting every loaded BLAS to one thread (about 15 us to enter)."""
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")
