"""Numba's on-disk cache under concurrent writers (solvers/_jit.py).

Real processes save distinct entries into one cache index at the same moment, through Numba's own
``IndexDataCacheFile``. Without the folder lock they lose index entries and leave entries naming data
files that another process rewrote for another entry (checked by hand with ``LOCK = False`` below, 3
runs: 94–103 of the 160 entries lost, and 23–34 of the 57–66 left loaded another entry's data: the
crash this lock prevents). With it, every entry must be present and must load its own data.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WRITER = textwrap.dedent("""
    import sys, time
    LOCK = True
    if LOCK:
        import solvers._jit  # installs the lock
    from numba.core.caching import IndexDataCacheFile
    folder, name, start, n = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    cache = IndexDataCacheFile(folder, "kernel", (1234.5, 678))
    while time.time() < start:
        time.sleep(0.001)
    for i in range(n):
        key = (name, i)
        cache.save(key, {"key": key, "pad": bytes(20000)})
""")


def test_concurrent_saves_keep_the_index_and_its_data_files_consistent(tmp_path):
    import solvers._jit  # noqa: F401
    from numba.core.caching import IndexDataCacheFile

    folder = tmp_path / "cache"
    folder.mkdir()
    writers, per_writer = 4, 40
    start = time.time() + 3.0  # every writer imported and waiting before the first save
    env = dict(os.environ, PYTHONPATH=REPO)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(folder), f"w{j}", repr(start), str(per_writer)],
                              env=env, stderr=subprocess.PIPE, text=True) for j in range(writers)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    cache = IndexDataCacheFile(str(folder), "kernel", (1234.5, 678))
    index = cache._load_index()
    expected = {(f"w{j}", i) for j in range(writers) for i in range(per_writer)}
    assert set(index) == expected, f"{len(expected - set(index))} entries lost"
    assert len(set(index.values())) == len(expected)  # one data file per entry
    for key in expected:
        assert cache.load(key)["key"] == key
