"""CSV cells of integer columns: a column of small non-negative integers is formatted once per
distinct value (simulator/outputs.py ``_column_strings``); the cells are Python's ``str`` of each
integer either way (Hypothesis over value ranges, signs, booleans and sizes)."""

from __future__ import annotations

import io

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from simulator.outputs import SMALL_INT_LOOKUP, _column_strings, write_rows

ints = st.sampled_from([np.int64, np.int32, np.uint8, np.bool_]).flatmap(
    lambda dt: arrays(dt, st.integers(0, 300), elements=st.integers(0, 1) if dt is np.bool_ else
                      st.integers(-5, 2 * SMALL_INT_LOOKUP) if dt is not np.uint8 else st.integers(0, 255)))


@settings(max_examples=200, deadline=None)
@given(ints)
def test_integer_cells_are_pythons_str_of_each_value(a):
    assert _column_strings(a) == [str(int(x)) for x in a.tolist()]


def test_rows_are_the_columns_joined_by_commas_one_line_each():
    buf = io.StringIO()
    write_rows(buf, {"a": np.array([1, 2]), "b": np.array([0.5, np.nan])}, ["a", "b"])
    assert buf.getvalue() == "1,0.5\n2,\n"
    buf = io.StringIO()
    write_rows(buf, {"a": np.zeros(0, np.int64)}, ["a"])
    assert buf.getvalue() == ""


def test_unsigned_64_bit_integers_keep_their_digits():
    a = np.array([0, 2**63, 2**64 - 1], dtype=np.uint64)  # past int64: a cast to it would wrap
    assert _column_strings(a) == ["0", str(2**63), str(2**64 - 1)]
    assert _column_strings(np.array([3, 1, 2], dtype=np.uint64)) == ["3", "1", "2"]


def test_a_missing_value_is_an_empty_cell_whether_nan_or_none():
    assert _column_strings(np.array([1, None, 2.5, float("nan")], dtype=object)) == ["1", "", "2.5", ""]
    assert _column_strings(np.array([True, False])) == ["1", "0"]  # bool columns as 0 / 1 (an int subclass)
