"""Bottom-layer checks: units, clock, random streams, registry, overrides, shared bandwidth."""

from __future__ import annotations

import math

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from simulator.config.loader import apply_overrides, resolve_component
from simulator.core import registry as reg
from simulator.core.clock import PS_PER_S, cycles_to_ps, s_to_ps
from simulator.core.errors import ConfigError, UnitError, UnknownKindError
from simulator.core.resources import SharedBandwidth
from simulator.core.rng import RngStreams
from simulator.core.units import DIMENSIONS, format_quantity, parse_quantity

# -- units ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text,dim,value", [
    ("3.35TB/s", "bandwidth", 3.35e12),
    ("80GiB", "bytes", 80 * 2**30),
    ("40MiB", "bytes", 40 * 2**20),
    ("1.98GHz", "frequency", 1.98e9),
    ("15ns", "time", 15e-9),
    ("4us", "time", 4e-6),
    ("989.4TFLOP/s", "flops", 989.4e12),
    ("700W", "power", 700.0),
    ("4/s", "rate", 4.0),
    ("120/min", "rate", 2.0),
    ("2.5USD/h", "price", 2.5),
])
def test_quantities_parse_to_si_base_units(text, dim, value):
    assert parse_quantity(text, dim) == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize("bad,fragment", [
    (3, "give a bytes unit"),
    ("3", "has no unit"),
    ("3 parsecs", "unknown bytes unit 'parsecs'"),
    ("lots", "cannot read"),
])
def test_a_bare_number_or_unknown_unit_is_an_error_naming_the_unit_to_give(bad, fragment):
    with pytest.raises(UnitError, match=fragment):
        parse_quantity(bad, "bytes")


@given(st.sampled_from(sorted(DIMENSIONS)), st.floats(min_value=1e-15, max_value=1e18,
                                                       allow_nan=False, allow_infinity=False))
def test_formatted_quantities_parse_back_to_exactly_the_same_value(dim, value):
    assert parse_quantity(format_quantity(value, dim), dim) == value


# -- clock ------------------------------------------------------------------------------------


def test_cycles_convert_to_picoseconds_in_bulk_not_by_summing_rounded_periods():
    # 1.98 GHz: one period is 505.05... ps; a million periods summed after rounding would be off by
    # 50,000 ps, converting in bulk is exact to the nearest picosecond
    n = 1_000_000
    assert cycles_to_ps(n, 1.98e9) == round(n * PS_PER_S / 1.98e9)
    assert abs(cycles_to_ps(n, 1.98e9) - n * round(PS_PER_S / 1.98e9)) > 1000
    assert s_to_ps(1.5) == 1_500_000_000_000


# -- randomness -------------------------------------------------------------------------------


def test_named_streams_do_not_depend_on_which_other_streams_were_drawn():
    a = RngStreams(7)
    a.get("output").random(1000)
    x = a.get("arrivals").random(5)
    b = RngStreams(7)
    y = b.get("arrivals").random(5)
    assert (x == y).all()
    assert not (RngStreams(8).get("arrivals").random(5) == y).all()


# -- registry ---------------------------------------------------------------------------------


def test_unknown_kind_suggests_the_closest_known_kind_and_lists_all():
    with pytest.raises(UnknownKindError) as err:
        reg.SCHEDULERS.get("vlm", where="policies.scheduler.kind")
    text = str(err.value)
    assert text.startswith("policies.scheduler.kind:")
    assert "did you mean 'vllm'" in text and "orca" in text and "static" in text


def test_module_colon_class_resolves_a_registered_builtin_to_its_entry():
    entry = reg.SCHEDULERS.get("policies.schedulers.vllm:VllmScheduler")
    assert entry.kind == "vllm"


def test_unknown_preset_suggests_a_close_name():
    with pytest.raises(ConfigError, match="did you mean 'H100-SXM'"):
        resolve_component({"kind": "gpu", "preset": "H100-SMX"}, reg.HARDWARE, "hardware.device")


def test_overrides_merge_over_the_preset_and_are_validated_with_a_dotted_path():
    comp = resolve_component({"kind": "gpu", "preset": "H100-SXM", "memory_bw_bytes_per_s": "4TB/s"},
                             reg.HARDWARE, "hardware.device")
    assert comp.config.memory_bw_bytes_per_s == 4e12
    assert comp.config.sm_count == 132  # from the preset
    with pytest.raises(ConfigError) as err:
        resolve_component({"kind": "gpu", "preset": "H100-SXM", "memory_bw_bytes_per_s": 4},
                          reg.HARDWARE, "hardware.device")
    assert str(err.value).startswith("hardware.device.memory_bw_bytes_per_s:")
    assert "TB/s" in str(err.value)


def test_configs_are_frozen():
    comp = resolve_component({"kind": "vllm"}, reg.SCHEDULERS, "policies.scheduler")
    with pytest.raises(ValidationError, match="frozen"):
        comp.config.block_size = 32


def test_set_overrides_parse_values_as_yaml_scalars_and_create_paths():
    out = apply_overrides({"cluster": {"replicas": 1}}, ["cluster.replicas=4", "run.max_time=10s"])
    assert out["cluster"]["replicas"] == 4 and out["run"]["max_time"] == "10s"
    with pytest.raises(ConfigError, match="is not a mapping"):
        apply_overrides({"seed": 1}, ["seed.x=2"])


# -- shared bandwidth -------------------------------------------------------------------------


def _transfer_times(bw, jobs):
    env = simpy.Environment()
    link = SharedBandwidth(env, bw)
    done = {}

    def job(i, start_ps, size):
        yield env.timeout(start_ps)
        yield link.transfer(size)
        done[i] = env.now

    for i, (start, size) in enumerate(jobs):
        env.process(job(i, start, size))
    env.run()
    return done, link


def test_two_equal_transfers_started_together_each_take_twice_as_long():
    alone, _ = _transfer_times(1e9, [(0, 1e6)])
    pair, _ = _transfer_times(1e9, [(0, 1e6), (0, 1e6)])
    assert alone[0] == 10**9  # 1 MB at 1 GB/s = 1 ms
    assert pair[0] == pair[1] == 2 * 10**9


def test_a_transfer_joining_later_slows_the_first_only_while_both_run():
    # A: 2 MB from t=0; B: 1 MB from t=1 ms. Alone until 1 ms (1 MB done), then both at 0.5 GB/s:
    # B needs 2 ms, A's remaining 1 MB also 2 ms -> both end at 3 ms.
    done, _ = _transfer_times(1e9, [(0, 2e6), (10**9, 1e6)])
    assert done[0] == done[1] == 3 * 10**9


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**9), st.floats(1.0, 1e7)), min_size=1, max_size=8))
def test_shared_link_is_work_conserving_and_never_faster_than_its_bandwidth(jobs):
    bw = 1e9
    done, link = _transfer_times(bw, jobs)
    total = sum(size for _, size in jobs)
    first = min(start for start, _ in jobs)
    last = max(done.values())
    # all bytes cannot cross faster than the link allows ...
    assert last - first >= math.floor(total / bw * PS_PER_S) - len(jobs)
    # ... and each transfer takes at least its size over the full bandwidth
    for i, (start, size) in enumerate(jobs):
        assert done[i] - start >= math.floor(size / bw * PS_PER_S) - 1
    # processor sharing is work-conserving: busy time equals bytes / bandwidth
    assert link.busy_ps == pytest.approx(total / bw * PS_PER_S, rel=1e-6, abs=len(jobs) * 2)


def test_setting_a_new_kind_starts_a_fresh_block_so_the_old_kinds_fields_do_not_linger():
    raw = {"policies": {"scheduler": {"kind": "sarathi", "chunk_size": 256}}}
    out = apply_overrides(raw, ["policies.scheduler.kind=vllm", "policies.scheduler.max_num_seqs=8"])
    assert out["policies"]["scheduler"] == {"kind": "vllm", "max_num_seqs": 8}
    same = apply_overrides(raw, ["policies.scheduler.kind=sarathi"])
    assert same["policies"]["scheduler"] == {"kind": "sarathi", "chunk_size": 256}
