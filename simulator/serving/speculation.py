"""Speculative decoding on a replica: multi-token decode steps (the mechanism; policies choose k).

Each step with speculation: the length policy (``policies.speculation.length``) names k per decode
row; the framework checks it (an int in 0..k_max, rows of this step only: else a PolicyError naming
the policy), caps it at the request's remaining output - 1 and at the KV blocks left after the
scheduler's plan (blocks for every row's own token first), and allocates KV for the verified
tokens. The target verifies them in one pass: a speculating row is timed as a chunk of
``verify_tokens(k)`` query tokens over its context (what a tree or k+1 verification computes) with
every position through the LM head, by the replica's own timing backend; the method's proposal cost
is added (a draft model's k decode iterations and its prefill of the step's prompt chunks, a
Medusa head's extra LM-head rows, an EAGLE layer per draft token, nothing for n-gram lookup). After
the step, ``a`` proposals are accepted (drawn from the request's per-position acceptance, stream
``speculation-<replica>``), ``a + 1`` tokens are emitted (capped at the output length), and the KV
of the rejected tokens is rolled back (``KVManager.rollback``).

Models: the expected tokens per step equal 1 + sum_j prod_{i<=j} rate_i ((1 - a^(k+1)) / (1 - a)
    for geometric acceptance; tests/test_speculation.py).
Ignores: the draft's catch-up pass over the accepted tokens; the tokens of one step arrive together
    (inter-token gaps are per step).
Sources: see ``policies/speculation``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from simulator.core.clock import PS_PER_S
from simulator.core.errors import ConfigError, HwsimError, PolicyError
from workloads.llm import BatchShape

WHERE = "policies.speculation"


class Speculator:
    def __init__(self, method, method_name: str, length, length_name: str, timer, rng,
                 draft_timer=None) -> None:
        self.method = method
        self.name = method_name
        self.length = length
        self.length_name = length_name
        self.timer = timer
        self.draft_timer = draft_timer
        self.rng = rng
        self.k_max = method.config.num_speculative_tokens
        self.proposer = method.proposer
        self.steps = self.rows = self.proposed = self.accepted = self.emitted = self.verified = 0
        self.draft_ps = 0
        self._rates: dict[int, np.ndarray] = {}
        self.alpha_by_rid: np.ndarray | None = None  # per-request acceptance from a trace column
        # the draft model's dynamic joules in the step being built, per device of the replica (a draft
        # on a device of its own: its joules / the replica's tp, so devices x per-device is its total)
        self.step_draft_j = 0.0
        self.draft_j_share = 1.0
        self.draft_own_device = False

    # -- acceptance ------------------------------------------------------------------------
    def rates(self, rid: int, k: int) -> np.ndarray:
        if self.alpha_by_rid is not None:
            return np.asarray(self.method.position_rates(k, float(self.alpha_by_rid[rid])), dtype=np.float64)
        r = self._rates.get(k)
        if r is None:
            r = self._rates[k] = np.asarray(self.method.position_rates(k), dtype=np.float64)
        return r

    def sample_accepted(self, rid: int, k: int) -> int:
        """Proposals accepted of ``k``: the first position whose draw fails stops the run."""
        u = self.rng.random(k)
        fail = np.flatnonzero(u >= self.rates(rid, k))
        return int(fail[0]) if fail.size else k

    # -- costs -----------------------------------------------------------------------------
    def _proposal_s(self, rows: int, ctx_sum: int, k: int, chunks) -> float:
        """Seconds spent proposing ``k`` tokens for ``rows`` rows of summed context ``ctx_sum``."""
        if k <= 0 or rows == 0:
            return 0.0
        if self.proposer == "model":
            t = 0.0
            for j in range(k):
                ps, _ = self.draft_timer.step(BatchShape(decode_rows=rows, decode_kv=ctx_sum + rows * (j + 1),
                                                         emitting=rows))
                t += ps / PS_PER_S
                self.step_draft_j += self.draft_timer.last_energy_j * self.draft_j_share
            return t
        if self.proposer == "heads" and self.method.config.style == "eagle":
            full, _ = self.timer.step(BatchShape(decode_rows=rows, decode_kv=ctx_sum + rows, emitting=rows))
            lm = self.timer._dense(rows, rows)[0] - self.timer._dense(rows, 0)[0]
            layers = self.timer.model.num_layers
            if self.timer.energy is not None:  # the head's joules as its time: one layer + the LM head, k times
                e_lm = sum(self.timer._dense_j(rows, rows)) - sum(self.timer._dense_j(rows, 0))
                self.step_draft_j += k * ((self.timer.last_energy_j - e_lm) / layers + e_lm)
            return k * ((full / PS_PER_S - lm) / layers + lm)
        return 0.0  # lookup; Medusa heads ride on the verification pass (extra LM-head rows)

    def _draft_prefill_s(self, chunks) -> float:
        if self.proposer != "model" or not chunks:
            return 0.0
        ps, _ = self.draft_timer.step(BatchShape(prefill=tuple(chunks), emitting=len(chunks)))
        self.step_draft_j += self.draft_timer.last_energy_j * self.draft_j_share
        return ps / PS_PER_S

    def _extra_emitting(self, k: int) -> int:
        return k if self.proposer == "heads" and self.method.config.style == "medusa" else 0

    def shape(self, chunks, plain_rows: int, plain_kv: int, spec_rows, emitting: int) -> BatchShape:
        """The step's shape: prompt chunks, plain decode rows, and speculating rows as chunks of
        their verified tokens (``spec_rows``: (verify tokens, context, k))."""
        extra = tuple((v, c) for v, c, _ in spec_rows)
        emit = emitting + plain_rows + sum(v + self._extra_emitting(k) for v, _, k in spec_rows)
        return BatchShape(prefill=tuple(chunks) + extra, decode_rows=plain_rows, decode_kv=plain_kv, emitting=emit)

    def step_s(self, k: int, chunks, dec, emitting: int) -> float:
        """Predicted seconds of the step with every decode row speculating ``k``."""
        if k <= 0:
            shape = BatchShape(prefill=tuple(chunks), decode_rows=len(dec),
                               decode_kv=sum(r.num_computed + 1 for r in dec), emitting=emitting + len(dec))
            extra = 0.0
        else:
            v = self.method.verify_tokens(k)
            shape = self.shape(chunks, 0, 0, [(v, r.num_computed, k) for r in dec], emitting)
            extra = self._proposal_s(len(dec), sum(r.num_computed for r in dec), k, chunks)
        ps, _ = self.timer.step(shape)
        return ps / PS_PER_S + extra + self._draft_prefill_s(chunks)

    # -- the policy hook -------------------------------------------------------------------
    def choose(self, now_ps: int, replica: int, dec, chunks, emitting: int, free_blocks: int,
               block_size: int) -> dict[int, int]:
        from policies.speculation import SpeculationView

        view = SpeculationView(now_ps, replica, tuple(dec), self.k_max, self.rates,
                               lambda k: self.step_s(k, chunks, dec, emitting), free_blocks, block_size)
        try:
            got = self.length.choose(view)
        except HwsimError:
            raise
        except Exception as exc:
            raise PolicyError(self.length_name, f"choose() raised {type(exc).__name__}: {exc}") from exc
        rids = {r.rid for r in dec}
        if isinstance(got, Mapping):
            out = {}
            for rid, k in got.items():
                if rid not in rids:
                    raise PolicyError(self.length_name, f"speculates for request {rid}, which is not decoded "
                                                        f"in this step on replica {replica}")
                out[rid] = self._check_k(k, rid)
            return out
        k = self._check_k(got, None)
        return {rid: k for rid in rids} if k else {}

    def _check_k(self, k, rid) -> int:
        who = f" for request {rid}" if rid is not None else ""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise PolicyError(self.length_name, f"speculation length{who} is {k!r}, not an integer")
        if k < 0 or k > self.k_max:
            raise PolicyError(self.length_name, f"speculation length {k}{who} outside 0..{self.k_max} "
                                                f"(num_speculative_tokens)")
        return int(k)

    def stats(self) -> dict:
        return {"spec_steps": self.steps, "spec_rows": self.rows, "spec_proposed_tokens": self.proposed,
                "spec_accepted_tokens": self.accepted, "spec_emitted_tokens": self.emitted,
                "spec_verified_tokens": self.verified, "spec_draft_s": self.draft_ps / 1e12}


# -- a replica's step with speculation (called by Replica._iteration) ----------------------
def speculate(rep, dec: list, chunks, emitting: int):
    """Split the decode rows into plain rows and speculating rows (request, k, verified tokens,
    context), with KV allocated for the verified tokens; and the proposal seconds."""
    spec, kv = rep.spec, rep.kv
    ks = spec.choose(rep.env.now, rep.index, dec, [(t, r.num_computed) for r, t in chunks], emitting,
                     kv.free, kv.block_size)
    if not ks:
        return dec, (), 0.0
    spare = kv.free - sum(kv.need(r, 1) for r in dec)  # every row's own token first
    plain, rows = [], []
    method = spec.method
    for r in dec:
        k = min(ks.get(r.rid, 0), r.max_new_tokens - r.num_generated - 1)
        while k > 0:
            v = method.verify_tokens(k)
            extra = kv.need(r, v) - kv.need(r, 1)
            if extra <= spare:
                spare -= extra
                break
            k -= 1
        if k <= 0:
            plain.append(r)
            continue
        ctx = r.num_computed
        kv.grow(r, v)
        rows.append((r, k, v, ctx))
    if not rows:
        return plain, (), 0.0
    kmax = max(k for _, k, _, _ in rows)
    spec.step_draft_j = 0.0  # only this step's draft passes (not the policy's predictions)
    draft_s = spec._proposal_s(len(rows), sum(c for *_, c in rows), kmax, None) + spec._draft_prefill_s(
        [(t, r.num_computed) for r, t in chunks])
    spec.draft_ps += int(round(draft_s * 1e12))
    return plain, tuple(rows), draft_s

def commit_speculation(rep, spec_rows, i: int, done: list) -> int:
    """After the verification: accept, emit, roll back the rejected tokens' KV. Returns the
    tokens processed beyond one per row."""
    spec, kvm = rep.spec, rep.kvm
    spec.steps += 1
    extra = 0
    for r, k, v, _ in spec_rows:
        a = spec.sample_accepted(r.rid, k)
        n = min(a + 1, r.max_new_tokens - r.num_generated)
        r.num_computed += n
        r.num_generated += n
        kvm.rollback(r, v - n)
        rep._mark(r, i, 1)
        spec.rows += 1
        spec.proposed += k
        spec.accepted += a
        spec.emitted += n
        spec.verified += v
        extra += n - 1
        if r.num_generated >= r.max_new_tokens:
            done.append(r)
    return extra


def trace_alphas(sim, comp) -> np.ndarray:
    """Per-request acceptance alpha from a column of the workload's trace file (request i = the i-th
    row used)."""
    import csv
    import json

    col = comp.config.acceptance.column
    where = f"{WHERE}.acceptance.column"
    meta = sim.table.meta
    if sim.scenario.workload.kind != "trace" or "source" not in meta:
        raise ConfigError("acceptance from a column needs a trace workload (workload.kind: trace)", where=where)
    path, start = meta["source"], int(meta.get("start_row", 0))
    with open(path, encoding="utf-8") as f:
        if path.endswith(".jsonl"):
            rows = [json.loads(line) for line in f if line.strip()]
        else:
            rows = list(csv.DictReader(line for line in f if line.strip() and not line.startswith("#")))
    if not rows or col not in rows[0]:
        raise ConfigError(f"trace {path} has no column {col!r}", where=where)
    vals = []
    for i, row in enumerate(rows[start:start + len(sim.table)]):
        try:
            a = float(row[col])
        except (TypeError, ValueError):
            raise ConfigError(f"row {start + i + 1} of {path}: {col}={row[col]!r} is not a number",
                              where=where) from None
        if not 0.0 <= a <= 1.0:
            raise ConfigError(f"row {start + i + 1} of {path}: acceptance {col}={a} outside [0, 1]", where=where)
        vals.append(a)
    return np.asarray(vals, dtype=np.float64)


def draft_memory(model, draft, tp: int) -> tuple[float, float]:
    """(weight bytes, KV bytes per token) of the draft per GPU at tensor parallelism ``tp``."""
    return draft.weight_bytes() / tp, draft.kv_elems_per_token(tp) * draft.dtype_bytes


def attach_speculation(sim) -> None:
    """Give every replica of ``sim`` the scenario's speculation (``policies.speculation``), if any:
    the method, its length policy, a draft timer on the replica's backend, and the draft's memory
    taken out of the KV blocks."""
    block = sim.scenario.spec.policies.speculation
    if block is None:
        return
    from policies.speculation import SPEC_LENGTHS, SPECULATION
    from simulator.config.loader import resolve_component
    from simulator.core import registry as reg
    from simulator.serving.step_timer import StepTimer

    base = sim.scenario.base_dir
    comp = resolve_component(block, SPECULATION, WHERE, base_dir=base)
    lcomp = resolve_component(comp.config.length, SPEC_LENGTHS, f"{WHERE}.length", base_dir=base)
    model = sim.scenario.model.config
    draft = None
    if comp.cls.proposer == "model":
        dc = resolve_component({"kind": "transformer", "preset": comp.config.draft}, reg.MODELS, f"{WHERE}.draft",
                               base_dir=base)
        draft = dc.config
        if draft.vocab_size != model.vocab_size:
            raise ConfigError(f"draft {draft.name} has a vocabulary of {draft.vocab_size}, the target "
                              f"{model.name} {model.vocab_size}: they must share a tokenizer", where=f"{WHERE}.draft")
    alphas = trace_alphas(sim, comp) if comp.config.acceptance.column is not None else None
    for rt in sim.pools:
        pool = rt.pool
        if pool.pipeline_parallel > 1:
            raise ConfigError("speculation runs on replicas without pipeline parallelism", where=WHERE)
        dtimer = None
        blocks = None
        dev_block = getattr(comp.config, "device", None)
        if draft is not None and dev_block is not None:  # the draft on a device of its own (an NPU, ...)
            dev = resolve_component(dev_block, reg.HARDWARE, f"{WHERE}.device", base_dir=base).config
            need = draft.weight_bytes() + draft.kv_bytes_per_token() * sim.max_model_len
            if need > dev.memory_bytes - getattr(dev, "extra_memory_bytes", 0.0):
                raise ConfigError(f"the draft {draft.name} needs {need / 2**30:.1f} GiB (weights + KV of one "
                                  f"max_model_len sequence), more than {dev.name} holds", where=f"{WHERE}.device")
            sc = sim.scenario
            dtimer = StepTimer(draft, 1, sc.timing.cls(sc.timing.config, dev, None), None, None, 0.0)
        elif draft is not None:
            dtimer = StepTimer(draft, pool.tensor_parallel, rt.backend, None, None, 0.0)
            w, per_tok = draft_memory(model, draft, pool.tensor_parallel)
            mem = rt.mem
            blocks = int((mem.kv_bytes - w) // ((mem.kv_bytes_per_token + per_tok) * mem.block_size))
            if blocks * mem.block_size < sim.max_model_len:
                raise ConfigError(f"the draft {draft.name} leaves KV for {max(blocks, 0) * mem.block_size} tokens "
                                  f"per replica, fewer than max_model_len={sim.max_model_len}", where=f"{WHERE}.draft")
        for i in rt.replicas:
            rep = sim.cluster.replicas[i]
            if rep.kvm.capped:
                raise ConfigError("speculation needs a paged or prefix KV cache (not an eviction cap)", where=WHERE)
            if blocks is not None:
                rep.kvm.set_total_blocks(blocks)
            rep.spec = Speculator(comp.cls(comp.config), comp.kind, lcomp.cls(lcomp.config), lcomp.kind,
                                  rep.timer, sim.rngs.get(f"speculation-{i}"), dtimer)
            rep.steady = False  # a step emits a random number of tokens: no stretch of identical steps
            rep.spec.alpha_by_rid = alphas
            if dev_block is not None:
                rep.spec.draft_j_share = 1.0 / pool.tensor_parallel
                rep.spec.draft_own_device = True
