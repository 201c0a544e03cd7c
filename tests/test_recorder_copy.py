"""A copied Recorder records into its own columns.

``Recorder.emit`` and ``segment`` append through the columns' bound ``append`` methods, looked up once.
``copy.deepcopy`` treats a bound built-in method as atomic, so a copy that kept those methods would
append to the original's columns and leave its own empty; pickling must rebind them as well.
"""

from __future__ import annotations

import copy
import pickle

from simulator.core.events import BATCH_COLUMNS, Recorder


def _sizes(rec: Recorder) -> tuple:
    return (len(rec.ev_t), len(rec.ev_kind), len(rec.ev_replica), len(rec.ev_request), len(rec.ev_value),
            *(len(rec.batch[c]) for c in BATCH_COLUMNS), len(rec.batch_flops), len(rec.batch_energy))


def _one_of_each(rec: Recorder, t: int) -> None:
    rec.emit(t, 1, 0, 7, 3)
    rec.segment(0, t, t + 5, 1, 0, 2, 4, 100, 0, 2, 1.5e9, 64, 0.25)


def test_a_deep_copy_and_an_unpickled_copy_append_to_their_own_columns():
    rec = Recorder(2)
    _one_of_each(rec, 10)
    for clone in (copy.deepcopy(rec), pickle.loads(pickle.dumps(rec))):
        before = _sizes(rec)
        _one_of_each(clone, 20)
        assert _sizes(rec) == before  # the original is untouched
        assert _sizes(clone) == tuple(n + 1 for n in before)
        assert list(clone.ev_t) == [10, 20] and list(clone.batch["end_ps"]) == [15, 25]
        assert clone.batch_flops == [1.5e9, 1.5e9] and list(clone.batch_energy) == [0.25, 0.25]
    _one_of_each(rec, 30)  # and the original still records into its own
    assert list(rec.ev_t) == [10, 30] and list(rec.batch["kv_tokens"]) == [64, 64]
