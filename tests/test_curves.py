"""The Parquet curve files (tracking/curves.py): the long-format contract survives a write and a read,
and only the columns that are not floats are dictionary-encoded."""

from __future__ import annotations

import types

import numpy as np
import pyarrow.parquet as pq

from tracking.curves import CURVE_COLUMNS, concat_curves, curve_table, metric_table, read_curves, write_curves


def test_curves_round_trip_with_dictionaries_only_for_non_float_columns(tmp_path):
    rng = np.random.default_rng(0)
    T = 500
    res = types.SimpleNamespace(iterations=np.arange(1, T + 1), gap=rng.random(T), value=rng.random(T),
                                best_response_value_max=rng.random(T), best_response_value_min=rng.random(T))
    table = concat_curves([curve_table(m, k, res, seed=3, stage_reset=True) for m in ("individual", "meta")
                           for k in range(3)])
    path = tmp_path / "curves.parquet"
    write_curves(path, table)
    back = read_curves(path)
    assert back.equals(table) and back.schema.equals(table.schema)
    assert tuple(back.column_names[:7]) == CURVE_COLUMNS
    meta = pq.ParquetFile(path).metadata.row_group(0)
    encodings = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(meta.num_columns)}
    dictionary = {name for name, enc in encodings.items() if any("DICTIONARY" in e for e in enc)}
    assert dictionary == {"method", "game", "iteration", "seed"}  # booleans are bit-packed, never dictionaries

    other = metric_table("single", 0, np.arange(4), rng.random(4), potential=rng.random(4))
    write_curves(path, other)
    assert read_curves(path).equals(other)
