"""The framework's cheaper ways to hand policies their views give the views the constructors give.

- ``scheduler_view`` sets the slots of a ``SchedulerView`` directly: equal to the constructor's, field
  for field, and as frozen.
- ``PagedKvCache.view`` hands out the same ``KvView`` while nothing it shows changed, a new one as soon
  as the free blocks do.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.core.contracts import KvView, SchedulerView, scheduler_view
from simulator.serving.kv_cache import PagedKvCache


@given(now=st.integers(0, 2**62), replica=st.integers(0, 64), waiting=st.lists(st.integers()),
       running=st.lists(st.integers()), free=st.integers(0, 10**6), max_len=st.integers(1, 10**6))
def test_scheduler_view_built_by_slots_equals_the_constructors(now, replica, waiting, running, free, max_len):
    kv = KvView(16, 10**6, free)
    args = (now, replica, tuple(waiting), tuple(running), kv, max_len)
    fast, slow = scheduler_view(*args), SchedulerView(*args)
    assert type(fast) is SchedulerView and fast == slow
    assert dataclasses.astuple(fast) == dataclasses.astuple(slow)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.now_ps = 1


@given(steps=st.lists(st.integers(-5, 5), max_size=30))
def test_kv_view_is_reused_only_while_unchanged(steps):
    cache = PagedKvCache(100, 16)
    prev = cache.view()
    for d in steps:
        cache.used = min(100, max(0, cache.used + d))
        v = cache.view()
        assert v == KvView(16, 100, 100 - cache.used)
        assert (v is prev) == (prev.free_blocks == v.free_blocks)
        prev = v
