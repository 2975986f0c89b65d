"""Convergence curves as Parquet (pyarrow): the long format users' scripts rely on.

One row per (method, game, evaluated iteration). Columns (contract; later columns may be added,
none renamed or dropped):

=============================  =======  ====================================================
column                         type     meaning
=============================  =======  ====================================================
``method``                     string   "single" (metasweep solve), "individual" or "meta"
``game``                       int32    0-based index of the game in the sequence
``iteration``                  int64    t, 1-based: the metrics are those after t iterations
``gap``                        float64  NE-gap of the running-average policy
``value``                      float64  V^{mu_bar,nu_bar}_1(s_1)
``best_response_value_max``    float64  V^{dag,nu_bar}_1(s_1)
``best_response_value_min``    float64  V^{mu_bar,dag}_1(s_1)
=============================  =======  ====================================================

Extra constant columns (e.g. ``seed``, ``stage_reset``) can be attached per block of rows.

Algorithms on N-player games (projected Q-ascent, MAML, Algorithm 2/3) write the same leading
columns ``method``, ``game``, ``iteration`` (0 = the initial policy where an algorithm records it)
and ``gap`` (the algorithm's headline gap, documented with it), followed by their own named
float64 columns (:func:`metric_table`).
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["CURVE_COLUMNS", "curve_table", "metric_table", "concat_curves", "write_curves", "write_parquet", "read_curves"]

CURVE_COLUMNS = ("method", "game", "iteration", "gap", "value", "best_response_value_max", "best_response_value_min")


def curve_table(method: str, game: int, result, **extra) -> pa.Table:
    """Rows of one Algorithm 1 result (an object with iterations, gap, value and the two best-response values)."""
    n = len(result.iterations)
    cols = {
        "method": pa.repeat(pa.scalar(method, pa.string()), n),
        "game": pa.array(np.full(n, game, dtype=np.int32)),
        "iteration": pa.array(np.asarray(result.iterations, dtype=np.int64)),
        "gap": pa.array(np.asarray(result.gap, dtype=np.float64)),
        "value": pa.array(np.asarray(result.value, dtype=np.float64)),
        "best_response_value_max": pa.array(np.asarray(result.best_response_value_max, dtype=np.float64)),
        "best_response_value_min": pa.array(np.asarray(result.best_response_value_min, dtype=np.float64)),
    }
    for key, val in extra.items():
        cols[key] = pa.repeat(pa.scalar(val), n)  # the type pa.array([val] * n) would infer, without the list
    return pa.table(cols)


def metric_table(method: str, game: int, iterations, gap, **columns) -> pa.Table:
    """Rows of one run of any algorithm: method, game, iteration, gap, then ``columns`` (float64 arrays)."""
    n = len(iterations)
    cols = {
        "method": pa.repeat(pa.scalar(method, pa.string()), n),
        "game": pa.array(np.full(n, game, dtype=np.int32)),
        "iteration": pa.array(np.asarray(iterations, dtype=np.int64)),
        "gap": pa.array(np.asarray(gap, dtype=np.float64)),
    }
    for key, val in columns.items():
        arr = np.asarray(val, dtype=np.float64)
        if arr.shape != (n,):
            raise ValueError(f"column {key!r} has shape {arr.shape}, expected ({n},)")
        cols[key] = pa.array(arr)
    return pa.table(cols)


def concat_curves(tables: list[pa.Table]) -> pa.Table:
    return pa.concat_tables(tables)


def write_parquet(table: pa.Table, path) -> None:
    """``table`` as Parquet at ``path``, dictionary-encoding only the columns that are not floats.

    pyarrow tries a dictionary for every column by default; the curves' float columns hardly repeat,
    so that attempt is wasted work. A trial's 200 000-row curves (F.1 at T = 10000) took 62 ms to write
    that way and 19 ms this way, in a smaller file (6.8 vs 7.6 MB; docs/benchmarks.md, "A cheaper
    upload"). Readers get the same table.
    """
    keys = [f.name for f in table.schema if not pa.types.is_floating(f.type)]
    pq.write_table(table, os.fspath(path), use_dictionary=keys)


def write_curves(path, table: pa.Table) -> None:
    """Write ``table`` atomically (temporary file, then rename): a reader never sees half a file."""
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    write_parquet(table, tmp)
    os.replace(tmp, path)


def read_curves(path) -> pa.Table:
    return pq.read_table(os.fspath(path))
