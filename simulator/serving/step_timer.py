"""Time one iteration, or a stretch of identical decode iterations, on one replica.

``step`` lowers an iteration to ops and asks the timing backend; ``decode_segment`` times ``k``
decode iterations of the same rows in one call: every op but decode attention is the same each
iteration (memoised per row count), and attention is evaluated for all ``k`` context sums at
once, so a long decode stretch costs one numpy call, not one SimPy event per token.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from hw_models.energy import energy_model
from hw_models.timing.roofline import RooflineBackend
from simulator.core.clock import PS_PER_S
from simulator.serving.dp_ranks import rank_shapes, rank_tokens
from workloads.llm import BatchShape, attention_ops, decode_attention, dense_ops

HEAD_OPS = ("final_norm", "lm_head")  # the dense ops that read ``emitting`` (workloads.llm._dense_unquantized)
SMALL_STRETCH = 16  # stretches of at most this many iterations timed in Python floats (crossover: BENCHMARKS.md)
STEP_MEMO = 16384  # most iteration shapes remembered per timer by StepTimer.step (then it starts afresh)


class StepTimer:
    """``framework`` (a :class:`~simulator.config.framework.FrameworkProfile` or None) adds what the
    serving engine does around the kernels: its fusions in the lowering; CUDA-graph replay of
    decode batches of at most ``cuda_graphs.max_batch`` rows, padded to the next captured size;
    otherwise host launches (``launch_s`` each; piecewise graphs launch only the attention kernels
    and one graph piece per layer), which bound the step when the CPU issues kernels more slowly
    than the GPU runs them; and the host time per step and per running request. Without a
    framework the backend's own launch accounting is used and nothing is added. ``kernel_overlap``
    (a policy of ``policies.overlap``, or None: kernels back to back) gives an iteration's GPU time
    from its op list; it applies to every iteration, those of a decode stretch included (each is
    overlapped on its own, so the stretch takes one overlap evaluation per iteration). ``expert_fetch``
    (a :class:`workloads.expert_offload.ExpertOffload`, or None: every expert on the GPU) adds the time
    an iteration waits for routed experts copied from host memory or SSD, after the GPU time.
    ``weight_offload`` (a :class:`workloads.weight_offload.WeightOffload`, or None: every weight on the
    GPU) times the iteration as a layer-by-layer pass with the streamed weights loaded beside compute.
    ``kv_fetch`` (a :class:`workloads.sparse_kv_fetch.SparseKvFetch`, or None) adds the wait for the
    values a sparse-attention KV policy copies from host memory each decode iteration."""

    def __init__(self, model, tp: int, backend, quant=None, framework=None, launch_s: float = 0.0,
                 ep: int = 1, kernel_overlap=None, dp: int = 1, expert_fetch=None, weight_offload=None,
                 kv_fetch=None) -> None:
        self.model = model
        self.kv_fetch = kv_fetch  # sparse KV fetched from host per decode step (shadowkv): stall_s(rows, kv) -> s
        self.weight_offload = weight_offload  # dense weights streamed per layer: step_s(dense, attn, ...) -> s
        self.expert_fetch = expert_fetch  # MoE expert offload: stall_s(tokens, gpu_s) -> seconds
        self.ep = ep  # MoE experts split over ep of the tp GPUs
        self.dp = dp  # attention data-parallel groups of tp / dp GPUs
        # concurrent kernels (policies.overlap): step_s(ops, backend) -> seconds; None = back to back
        self.kernel_overlap = kernel_overlap
        self._dense_list: dict[tuple[int, int], tuple[list, list]] = {}
        self.quant = quant  # a quantization scheme (policies.quantization) or None
        self.tp = tp
        self.backend = backend
        self.framework = framework
        self.fusion = framework.fusion if framework is not None else None
        self.launch_s = float(launch_s) if framework is not None else 0.0
        if framework is not None:
            self.host_step_s = framework.host.step_s
            self.host_seq_s = framework.host.per_seq_s
            self.overlap = framework.host.overlap
        else:
            self.host_step_s = self.host_seq_s = 0.0
            self.overlap = False
        self._fixed: dict[tuple[int, int], tuple[float, float, int]] = {}
        self._attn_template = {}
        # energy (hw_models.energy): dynamic joules per GPU of the last call, in ``last_energy_j`` (one
        # value per iteration for decode_segment); under a power cap the GPU time is throttled first
        dev = backend.device
        self.energy = energy_model(dev) if getattr(dev, "tdp_w", None) else None
        self._dense_energy: dict[tuple[int, int], tuple[float, float]] = {}
        self._steps: dict[tuple, tuple] = {}  # shape's fields -> (ps, FLOPs, joules, energy model) of step()
        self._affine_j: dict[int, tuple] = {}  # rows -> (decode op, fixed J, J per context token) of a stretch
        # dense-op parts (see _dense): token count -> (terms folded before the head ops, terms after
        # them); emitting rows -> the head ops' terms. Off for hybrid models (their own op order).
        self._bodies: dict[int, tuple] = {}
        self._heads: dict[int, list] = {}
        self._split_heads = getattr(model, "linear", None) is None
        self.last_energy_j = 0.0
        self.attn_flops_per_kv = 4.0 * max(1, model.num_heads // (tp // dp)) * model.head_dim * model.num_layers / dp

    def _dense(self, tokens: int, emitting: int) -> tuple[float, float, int]:
        """(kernel seconds, FLOPs, kernel launches) of every op but attention.

        Memoised per (tokens, emitting). Only the head ops (``HEAD_OPS``: final norm, LM head and
        the kernels a quantization scheme adds to it) read ``emitting``, and they read nothing else,
        so a pair not seen before whose token count and emitting rows were each seen in some other
        pair is assembled from the two: the per-op terms are added in op-list order, the same
        additions as lowering the pair afresh (``tests/test_hot_path_exact.py`` checks the equality)."""
        key = (tokens, emitting)
        hit = self._fixed.get(key)
        if hit is None:
            split = emitting > 0 and self._split_heads
            if split:
                body, head = self._bodies.get(tokens), self._heads.get(emitting)
                if body is not None and head is not None:
                    return self._fold(key, body[0], head + body[1])
            ops = dense_ops(tokens, emitting, self.model, self.tp, self.quant, self.fusion, self.ep, self.dp)
            energy = self.energy
            op_s = self.backend.op_s
            terms = [(op_s(op), op.flops(), op.count, *(energy.op_j(op) if energy is not None else (0.0, 0.0)))
                     for op in ops]
            hit = self._fold(key, (0, 0, 0, 0, 0), terms)
            if split:
                self._learn(tokens, emitting, ops, terms)
        return hit

    def _fold(self, key: tuple[int, int], start: tuple, terms: list) -> tuple[float, float, int]:
        """Add per-op (seconds, FLOPs, launches, compute J, memory J) to ``start`` one op at a time
        (as ``sum`` over the op list does); memoise the step terms and, with energy, the joules."""
        s, fl, n, cj, mj = start
        for t in terms:
            s += t[0]
            fl += t[1]
            n += t[2]
            cj += t[3]
            mj += t[4]
        hit = self._fixed[key] = (s, fl, n)
        if self.energy is not None:
            self._dense_energy[key] = (cj, mj)
        return hit

    def _learn(self, tokens: int, emitting: int, ops: list, terms: list) -> None:
        """Remember the lowering's parts: the folded terms before the head ops and the terms after
        them (per token count), the head ops' terms (per emitting rows). A lowering that breaks the
        rule (head ops not contiguous, or parts that differ from those remembered) turns the
        assembly off for this timer."""
        at = [i for i, op in enumerate(ops) if op.name.startswith(HEAD_OPS)]
        if not at or at[-1] - at[0] + 1 != len(at):
            self._split_heads = False
            return
        i0, i1 = at[0], at[-1] + 1
        s = fl = n = cj = mj = 0
        for t in terms[:i0]:
            s += t[0]
            fl += t[1]
            n += t[2]
            cj += t[3]
            mj += t[4]
        body = ((s, fl, n, cj, mj), terms[i1:])
        head = terms[i0:i1]
        if self._bodies.setdefault(tokens, body) != body or self._heads.setdefault(emitting, head) != head:
            self._split_heads = False

    def _dense_j(self, tokens: int, emitting: int) -> tuple[float, float]:
        """(compute J, memory J) per GPU of every op but attention."""
        key = (tokens, emitting)
        hit = self._dense_energy.get(key)
        if hit is None:
            e = self.energy.ops_energy(dense_ops(tokens, emitting, self.model, self.tp, self.quant, self.fusion,
                                                 self.ep, self.dp))
            hit = self._dense_energy[key] = (e.compute_j, e.memory_j)
        return hit

    def _throttled(self, t: float, dense_c: float, dense_m: float, attn) -> float:
        """GPU seconds of one step under the power cap; its dynamic joules into ``last_energy_j``."""
        if self.energy.cap_w is None:  # no cap: no throttling, no numpy on the per-step path
            self.last_energy_j = dense_c + dense_m + attn.compute_j + attn.memory_j
            return t
        t_cap, self.last_energy_j = self.energy.throttle_step(float(t), dense_c + attn.compute_j,
                                                              dense_m + attn.memory_j)
        return t_cap

    def _throttled_segment(self, step_s, rows: int, op, kv: np.ndarray):
        """Per-iteration GPU seconds of a decode stretch under the power cap; per-iteration joules
        into ``last_energy_j``. Decode attention's FLOPs and bytes at each summed context ``kv`` are
        :meth:`workloads.llm.Op.flops` and ``bytes_moved`` evaluated over the array."""
        e = self.energy
        if e.cap_w is None and not op.kv_bytes:  # no cap, 16-bit K/V: joules affine in the context
            terms = self._affine_terms(rows, op)
            self.last_energy_j = terms[1] + terms[2] * kv
            return step_s
        padded = self._padded_decode(rows)
        dense_c, dense_m = self._dense_j(padded, padded)
        kvf = kv.astype(np.float64)
        flops = 4.0 * op.heads * op.head_dim * kvf * op.count
        nbytes = op.head_dim * (2.0 * op.seqs * op.heads * op.dtype_bytes
                                + 2.0 * op.kv_heads * op.kv_elem_bytes(kvf)) * op.count
        step_s, self.last_energy_j = e.throttle(step_s, dense_c + flops * e.flop_energy(op.dtype),
                                                dense_m + nbytes * e.dram_path_j)
        return step_s

    def _affine_terms(self, rows: int, op) -> tuple:
        """(op, fixed J, J per context token) of a decode iteration of ``rows`` rows without a power cap
        and with 16-bit K/V, once per row count."""
        terms = self._affine_j.get(rows)
        if terms is None or terms[0] is not op:
            e = self.energy
            padded = self._padded_decode(rows)
            dense_c, dense_m = self._dense_j(padded, padded)
            per_kv = op.head_dim * op.count * (4.0 * op.heads * e.flop_energy(op.dtype)
                                               + 2.0 * op.kv_heads * op.dtype_bytes * e.dram_path_j)
            fixed = dense_c + dense_m + 2.0 * op.head_dim * op.seqs * op.heads * op.dtype_bytes * op.count \
                * e.dram_path_j
            terms = self._affine_j[rows] = (op, fixed, per_kv)
        return terms

    def _fetch_j(self, tokens: int, rows: int, kv):
        """Joules per GPU of an iteration's copies off the GPU at the PCIe tier: the routed experts the
        GPU's cache misses (``expert_fetch``: from an SSD the drive's own energy is not charged), the
        values a sparse-KV policy fetches (``kv_fetch``) and a weight-offload stream's layer weights and
        KV both ways (``weight_offload``; what it reads from or writes to a drive also at the ssd tier),
        whether or not the copies hide behind compute. ``tokens``: the tokens computed; ``kv``: the
        summed decode context (an array over a decode stretch)."""
        pcie = self.energy.byte_j["pcie"]
        j = 0.0
        wo = self.weight_offload
        if wo is not None:
            h2d, d2h, disk, _, kv_read, kv_write = wo.layer_traffic(rows, kv, tokens)
            drive = disk + (kv_read + kv_write if wo.kv_on_disk else 0.0)
            j = j + wo.num_layers * ((h2d + d2h) * pcie + drive * self.energy.byte_j["ssd"])
        ef = self.expert_fetch
        if ef is not None:
            j += ef.moe_layers * ef.misses(tokens) * ef.expert_bytes * pcie
        kf = self.kv_fetch
        if kf is not None and rows:
            j = j + kf.num_layers * kf.selected(rows, kv) * kf.kv_width * kf.dtype_bytes * (1.0 - kf.value_cache_hit) \
                * pcie
        return j

    def _launch_floor(self, kernels: int, decode_only: bool, rows: int) -> float:
        """Host launch time of one step (0 when a CUDA graph replays it). Under attention data parallelism
        each rank replays its own graph of its share of the rows (``_padded_decode``)."""
        fw = self.framework
        if self.dp > 1:
            rows = -(-rows // self.dp)
        if fw is None or (decode_only and rows <= fw.cuda_graphs.max_batch):
            return 0.0
        if fw.cuda_graphs.mixed == "piecewise":
            kernels = 2 * self.model.num_layers + 1
        return kernels * self.launch_s

    def step(self, shape: BatchShape) -> tuple[int, float]:
        """(picoseconds, FLOPs per GPU) of one iteration, memoised per shape while the step is a pure
        function of it (no expert, KV or weight offload, no overlap policy; the energy model recorded)."""
        pure = (self.expert_fetch is None and self.kv_fetch is None and self.weight_offload is None
                and self.kernel_overlap is None)
        if pure:  # keyed by the shape's fields as a plain tuple: hashed and compared without Python calls
            key = (shape.prefill, shape.decode_rows, shape.decode_kv, shape.emitting, shape.decode_ctx)
            hit = self._steps.get(key)
            if hit is not None and hit[3] is self.energy:
                self.last_energy_j = hit[2]
                return hit[0], hit[1]
        ps, flops = self._step(shape)
        if pure:
            if len(self._steps) >= STEP_MEMO:
                self._steps.clear()
            self._steps[key] = (ps, flops, self.last_energy_j, self.energy)
        return ps, flops

    def _step(self, shape: BatchShape) -> tuple[int, float]:
        decode_only = not shape.prefill
        rows = shape.decode_rows + len(shape.prefill)
        tokens = sum(t for t, _ in shape.prefill) + shape.decode_rows
        emitting = shape.emitting
        if decode_only and (self.framework is not None or self.dp > 1):
            tokens = emitting = self._padded_decode(tokens)
        if self.dp > 1 and not decode_only:  # the busiest rank sets the step, every rank padded to it
            tokens, emitting, attn = self._busiest_rank(shape)
        else:
            attn = attention_ops(shape, self.model, self.tp, self.quant, self.dp)
        t, flops, kernels = self._dense(tokens, emitting)
        for op in attn:
            t += self.backend.op_s(op)
            flops += op.flops()
            kernels += op.count
        if self.kernel_overlap is not None:
            t = min(t, self._overlapped_s(tokens, emitting, attn, t))
        if self.weight_offload is not None:
            t = self._offloaded_s(shape, tokens, emitting, attn)
        if self.kv_fetch is not None and shape.decode_rows:
            t += float(self.kv_fetch.stall_s(shape.decode_rows, shape.decode_kv))
        if self.energy is not None:
            t = self._throttled(t, *self._dense_j(tokens, emitting), self.energy.ops_energy(attn))
            if self.expert_fetch is not None or self.kv_fetch is not None or self.weight_offload is not None:
                self.last_energy_j += self._fetch_j(sum(n for n, _ in shape.prefill) + shape.decode_rows,
                                                    shape.decode_rows, shape.decode_kv)
        if self.expert_fetch is not None:  # the tokens routed, not the CUDA-graph padding
            t += self.expert_fetch.stall_s(sum(n for n, _ in shape.prefill) + shape.decode_rows, t)
        if self.framework is not None:
            t = self._with_host(max(t, self._launch_floor(kernels, decode_only, rows)), rows)
        return int(round(t * PS_PER_S)), flops

    def _padded_decode(self, rows: int) -> int:
        """Tokens the non-attention ops of a decode-only iteration of ``rows`` rows run: the CUDA-graph size
        the rows are padded to; with attention data parallelism, each rank's share (rows dealt evenly) padded
        to its graph size and every rank to the busiest, ``dp`` x that (``simulator.serving.dp_ranks``)."""
        fw = self.framework
        if self.dp > 1:
            per = -(-rows // self.dp)
            return self.dp * (fw.padded_batch(per) if fw is not None else per)
        return fw.padded_batch(rows) if fw is not None else rows

    def rank_attention_s(self, shape: BatchShape) -> list[tuple[float, list]]:
        """(attention seconds, attention ops) of each attention data-parallel rank's share of ``shape``
        (``simulator.serving.dp_ranks.rank_shapes``) on its ``tp / dp`` GPUs."""
        out = []
        for part in rank_shapes(shape, self.dp):
            ops = attention_ops(part, self.model, self.tp // self.dp, self.quant) if rank_tokens(part) else []
            out.append((sum(self.backend.op_s(op) for op in ops), ops))
        return out

    def _busiest_rank(self, shape: BatchShape) -> tuple[int, int, list]:
        """(tokens, emitting rows, attention ops) an iteration with prefills runs under attention data
        parallelism: every MoE layer waits for all ranks, so the step is the busiest rank's; each rank is
        padded to the most tokens and emitting rows of any rank (the dense ops run ``dp`` x those, one
        share per rank: the experts take every rank's padded tokens), and the attention is the slowest
        rank's."""
        parts = rank_shapes(shape, self.dp)
        t_max = max(rank_tokens(p) for p in parts)
        e_max = max(p.emitting for p in parts)
        attn = max(self.rank_attention_s(shape), key=lambda x: x[0])[1]
        return self.dp * t_max, self.dp * e_max, attn

    def _offloaded_s(self, shape: BatchShape, tokens: int, emitting: int, attn: list) -> float:
        """Seconds of one iteration with streamed weights: the dense ops of ``num_gpu_batches`` GPU
        batches, attention, and the layer loads (``workloads.weight_offload``)."""
        wo = self.weight_offload
        k = wo.num_gpu_batches
        dense = k * self._dense(-(-tokens // k), -(-emitting // k))[0]
        dec = sum(self.backend.op_s(op) for op in attn if op.name == "attn_decode")
        other = sum(self.backend.op_s(op) for op in attn if op.name != "attn_decode")
        computed = sum(n for n, _ in shape.prefill) + shape.decode_rows
        return float(wo.step_s(dense, other, dec, shape.decode_rows, shape.decode_kv, computed))

    def _ordered(self, tokens: int, emitting: int, attn: list) -> list:
        """An iteration's ops in execution order (attention before the O projection, as
        ``workloads.llm.lower`` orders them)."""
        key = (tokens, emitting)
        hit = self._dense_list.get(key)
        if hit is None:
            dense = dense_ops(tokens, emitting, self.model, self.tp, self.quant, self.fusion, self.ep, self.dp)
            cut = next((i for i, op in enumerate(dense) if op.name == "o_proj"), len(dense))
            hit = self._dense_list[key] = (dense[:cut], dense[cut:])
        return hit[0] + list(attn) + hit[1]

    def _overlapped_s(self, tokens: int, emitting: int, attn: list, summed_s: float) -> float:
        """GPU seconds of one iteration under the overlap policy: the split iteration's, or
        ``summed_s`` (its kernels back to back) when the policy does not split it."""
        t = self.kernel_overlap.overlapped_s(self._ordered(tokens, emitting, attn), self.backend)
        return summed_s if t is None else t

    def _with_host(self, gpu_s, rows: int):
        """Step time with the host's work: after the GPU's, or overlapped with it. Under attention data
        parallelism each rank's process schedules and prepares its own requests at the same time (vLLM's
        engine core per DP rank, SGLang's scheduler per DP rank), so the per-request work is one rank's."""
        if self.dp > 1:
            rows = -(-rows // self.dp)
        host = self.host_step_s + self.host_seq_s * rows
        return np.maximum(gpu_s, host) if self.overlap else gpu_s + host

    def _decode_fixed(self, rows: int) -> tuple[float, float, int]:
        if rows not in self._attn_template:
            self._attn_template[rows] = decode_attention(self.model, self.tp // self.dp, -(-rows // self.dp), 0,
                                                         self.quant)
        padded = self._padded_decode(rows)
        return self._dense(padded, padded)

    def decode_segment(self, rows: int, kv0: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-iteration picoseconds (int64) and FLOPs of ``k`` decode iterations of ``rows``
        rows whose summed context is ``kv0`` in the first iteration and grows by ``rows``."""
        fixed_s, fixed_flops, kernels = self._decode_fixed(rows)
        if k <= SMALL_STRETCH and type(kv0) is int:
            out = self._small_segment(rows, kv0, k, fixed_s, fixed_flops, kernels)
            if out is not None:
                return out
        if isinstance(kv0, np.ndarray):  # a capped cache's per-iteration resident context
            kv = kv0 + rows * np.arange(k, dtype=np.int64)
        else:
            kv = np.arange(kv0, kv0 + rows * k, rows, dtype=np.int64)  # kv0 + rows * j
        template = self._attn_template[rows]
        attn_s = self.backend.decode_attention_s(template, -(-kv // self.dp) if self.dp > 1 else kv)
        attn_fl = None
        if self.model.attention is not None or self.model.linear is not None:  # per layer / head groups
            from workloads.variant_ops import decode_attention_s

            attn_s, attn_fl = decode_attention_s(self.backend, self.model, self.tp // self.dp, -(-rows // self.dp),
                                                 -(-kv // self.dp), self.quant)
        step_s = fixed_s + attn_s
        if self.kernel_overlap is not None:  # each iteration's ops overlapped as ``step`` does
            padded = self._padded_decode(rows)
            if self.kernel_overlap.splits(self._ordered(padded, padded, [template]), self.backend):
                per = -(-kv // self.dp)  # each attention group's context sum
                step_s = np.minimum(step_s, [self._overlapped_s(padded, padded, [replace(template, kv_tokens=int(x))],
                                                                s) for x, s in zip(per, step_s)])
        if self.weight_offload is not None:
            wo = self.weight_offload
            padded = self._padded_decode(rows)
            n = -(-padded // wo.num_gpu_batches)
            step_s = wo.step_s(wo.num_gpu_batches * self._dense(n, n)[0], 0.0, attn_s, rows, kv, rows)
        if self.kv_fetch is not None:
            step_s = step_s + self.kv_fetch.stall_s(rows, kv)
        if self.energy is not None:
            step_s = self._throttled_segment(step_s, rows, template, -(-kv // self.dp) if self.dp > 1 else kv)
            if self.expert_fetch is not None or self.kv_fetch is not None or self.weight_offload is not None:
                self.last_energy_j = self.last_energy_j + self._fetch_j(rows, rows, kv)
        if self.expert_fetch is not None:
            step_s = step_s + self.expert_fetch.stall_s(rows, step_s)
        if self.framework is not None:
            floor = self._launch_floor(kernels + template.count, True, rows)
            step_s = self._with_host(np.maximum(step_s, floor), rows)
        ps = np.rint(step_s * PS_PER_S).astype(np.int64)
        flops = fixed_flops + (self.attn_flops_per_kv * kv if attn_fl is None else attn_fl)
        return ps, flops

    def _small_segment(self, rows: int, kv0: int, k: int, fixed_s: float, fixed_flops: float, kernels: int):
        """``decode_segment`` of a short stretch in the plain case (roofline timing with 16-bit K/V, one
        attention group, no overlap policy, no offload or fetch, no power cap): the same IEEE operations
        on each iteration's context in the same order as the array expressions (``RooflineBackend.
        decode_attention_s``, ``_throttled_segment``, ``_launch_floor`` / ``_with_host``, the rounding to
        picoseconds), one element at a time -- on a few iterations cheaper than a dozen numpy calls on tiny
        arrays. None where the case is not the plain one."""
        b = self.backend
        if (type(b) is not RooflineBackend or self.dp != 1 or self.kernel_overlap is not None
                or self.weight_offload is not None or self.kv_fetch is not None or self.expert_fetch is not None
                or self.model.attention is not None or self.model.linear is not None):
            return None
        template = self._attn_template[rows]
        e = self.energy
        if e is not None and (e.cap_w is not None or template.kv_bytes):
            return None
        terms = b.decode_terms(template)
        if terms is None:
            return None
        c_flops, peak, b0, b1, launch, count = terms
        bw = b._bw
        kvs = range(kv0, kv0 + rows * k, rows)
        step = [fixed_s + (max(c_flops * x / peak, (b1 * x + b0) / bw) + launch) * count for x in kvs]
        if e is not None:
            _, fixed_j, per_kv = self._affine_terms(rows, template)
            self.last_energy_j = np.array([fixed_j + per_kv * x for x in kvs], dtype=np.float64)
        if self.framework is not None:
            floor = self._launch_floor(kernels + template.count, True, rows)
            host = self.host_step_s + self.host_seq_s * rows
            if self.overlap:
                step = [max(max(s, floor), host) for s in step]
            else:
                step = [max(s, floor) + host for s in step]
        fpk = self.attn_flops_per_kv
        return (np.array([round(s * PS_PER_S) for s in step], dtype=np.int64),
                np.array([fixed_flops + fpk * x for x in kvs], dtype=np.float64))
