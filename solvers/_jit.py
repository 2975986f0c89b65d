"""``njit`` and ``prange`` for every kernel module, with Numba's on-disk cache made safe for processes
that compile at the same time (kernel modules import them from here, so the lock is installed before
any kernel is compiled or loaded).

Every kernel here is ``@njit(cache=True)``: a process that compiles a signature saves it beside the
source (``__pycache__/NAME.nbi``, an index from signature keys to data files ``NAME.N.nbc``), and
later processes (Ray workers above all) load it instead of compiling again. Numba's
``IndexDataCacheFile.save`` reads the index, picks a data file, writes the index and then the data
file, with no lock: two processes saving at the same moment (two Ray workers, a sweep beside a
script, a process started before a source edit beside one started after) can leave an index entry
naming a data file another process wrote for other code. Every later process that loads the entry
then runs the wrong machine code; here it crashed with a segmentation fault in the dense Algorithm 1
kernel, in every process, until the cache was deleted (Numba issues #4807 and #10128 describe the
same class of race).

``_install`` wraps ``save`` (and ``flush``) in an exclusive ``flock`` of the cache folder and
``load`` in a shared one, so a reader sees an index and its data files as one writer left them and
two writers never interleave. Sequential use is unchanged. The lock is held for reading or writing
a few files, never during a compilation. Without ``fcntl`` (not POSIX) nothing is installed.
"""

from __future__ import annotations

import contextlib
import os

try:
    import fcntl
except ImportError:  # not POSIX: Numba's cache stays as it is
    fcntl = None

__all__ = ["njit", "prange"]


@contextlib.contextmanager
def _folder_lock(folder: str, exclusive: bool):
    """``flock`` of ``folder`` (the cache folder exists by the time Numba saves or finds an index)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except FileNotFoundError:  # nothing cached yet: a load finds no index; a save creates the folder first
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _install() -> None:
    """Wrap Numba's cache file methods with the folder lock (once: the wrappers are marked)."""
    from numba.core.caching import IndexDataCacheFile

    save, load, flush = IndexDataCacheFile.save, IndexDataCacheFile.load, IndexDataCacheFile.flush
    if fcntl is None or getattr(save, "locked", False):
        return

    def locked_save(self, key, data):
        with _folder_lock(self._cache_path, exclusive=True):
            return save(self, key, data)

    def locked_load(self, key):
        with _folder_lock(self._cache_path, exclusive=False):
            return load(self, key)

    def locked_flush(self):
        with _folder_lock(self._cache_path, exclusive=True):
            return flush(self)

    locked_save.locked = True
    IndexDataCacheFile.save, IndexDataCacheFile.load, IndexDataCacheFile.flush = locked_save, locked_load, locked_flush


_install()

from numba import njit, prange
