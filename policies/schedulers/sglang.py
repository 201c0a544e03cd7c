"""SGLang's scheduler: prefill first, chunked prefill, and admission against a KV reservation.

Models (each iteration, ``Scheduler.get_next_batch_to_run`` -> ``get_new_batch_prefill``, else
``update_running_batch``):
    1. A prefill batch is built when requests wait (or a request's prompt is part way through its
       chunks) and the running batch is not marked full; it runs on its own and the decodes wait
       (prefill first; mixing decodes into it is ``--enable-mixed-chunk``, off by default).
    2. The batch holds at most ``chunked_prefill_size`` prompt tokens: first the next chunk of the
       request whose prompt was cut in the previous batch, then waiting requests first come, first
       served; the one that does not fit is cut to fill the chunk (its rest comes next iteration).
    3. Admission is checked against a reservation of the KV pool (``PrefillAdder``): each running
       request holds back ``min(max_new_tokens - generated, clip) x new_token_ratio`` tokens it may
       still write, each request admitted in this batch its prompt plus ``min(max_new_tokens, clip)``
       in full; a request is admitted only while its prompt + remaining output is below the free
       tokens minus those reservations. A refusal (or ``max_running_requests`` reached, the batch's
       requests counted with the chunked one, which is not yet in the running batch) marks the
       running batch full: no prefill is tried again until a running request leaves it.
    4. ``new_token_ratio`` starts at ``init_new_token_ratio x schedule_conservativeness``, falls by
       ``(init - init x min_factor) / decay_steps`` each decode step down to ``init x min_factor``,
       and returns to the start when the engine idles. The serving loop does not ask a scheduler while
       nothing waits or runs, so a plan that finds no running request resets it unless requests
       were left queued by the last plan (SGLang then builds the next prefill batch at once) and the
       batch was not full (a full batch that empties makes one idle iteration). A request that
       arrived during the last step before the batch emptied cannot be told from one that arrived
       later: the ratio is reset, where SGLang, finding it queued, would not.
    5. A decode step for every running request; when the pool lacks a token for each of them, the
       requests with the fewest output tokens (then the longest prompt) are retracted (preempted by
       recompute) until it has, and the ratio becomes ``(tokens decoded + retract_decode_steps x
       requests) / (max_new_tokens summed + 1)`` over those kept (``ScheduleBatch.retract_decode``).
       A retracted request joins the back of the queue (``_add_request_to_queue`` appends; the
       default fcfs policy does not sort), behind the requests waiting at its retraction.
    ``max_running_requests`` (None): SGLang's derived limit, ``min(pool tokens // 2, clamp(pool
    tokens / context length x 512, 2048, 4096))`` (``model_runner.init_memory_pool``: the request
    pool size; ``tp_worker``: the minimum), with the engine's ``max_model_len`` as the context length.
Ignores: the radix (prefix) cache (its evictable tokens count as free here: nothing is shared), the
    ignore-EOS admission path SGLang takes only with the radix cache disabled, priority scheduling,
    LoRA, grammar queues, the overlap scheduler's one-step lag in seeing finished requests, and
    the running batch's finished requests counted (cap and reservation) until its next decode
    filters them: a batch marked full admits at the first plan after a request leaves it, SGLang
    one decode step later. DP attention's settings (``_handle_data_parallelism``:
    schedule_conservativeness x 0.3, chunked_prefill_size / dp_size; ``tp_worker``: a given
    max_running_requests / dp_size) are not derived: give them in the scheduler block. The decay is
    counted from one running request's output tokens, one per decode step; under speculative
    decoding (several tokens a step) it runs ahead of SGLang's one decay per step.
Sources: sglang==0.5.6.post2 (same rules in 0.5.8.post1 and 0.5.9)
    ``sglang/srt/managers/scheduler.py`` (``get_next_batch_to_run``, ``get_new_batch_prefill``,
    ``update_running_batch``, new_token_ratio init / min / decay), ``managers/scheduler_runtime_checker_mixin.py``
    (``self_check_during_idle``: the ratio's reset), ``managers/schedule_policy.py``
    (``PrefillAdder``: ``rem_total_tokens``, ``add_one_req``, ``add_chunked_req``,
    ``CLIP_MAX_NEW_TOKENS`` 4096), ``managers/schedule_batch.py`` (``check_decode_mem``,
    ``retract_decode``), ``environ.py`` (SGLANG_INIT_NEW_TOKEN_RATIO 0.7,
    SGLANG_MIN_NEW_TOKEN_RATIO_FACTOR 0.14, SGLANG_NEW_TOKEN_RATIO_DECAY_STEPS 600,
    SGLANG_RETRACT_DECODE_STEPS 20), ``server_args.py`` (max_prefill_tokens 16384,
    schedule_conservativeness 1.0, page_size 1), ``model_executor/model_runner.py`` and
    ``managers/tp_worker.py`` (max_running_requests).

``steady_decode`` holds: a decode-only plan over every running request means nothing waits, or
the running batch is marked full, which only a request leaving the batch (a finish, a retraction)
clears; the decode check needs one free token per request, which the stretch keeps. The ratio's
decay over a stretch is counted from the running requests' output tokens at the next call.
"""

from __future__ import annotations

from pydantic import Field

from policies.api import BatchPlan, KvView, PrefillChunk, RequestView, SchedulerView, StrictConfig, register_scheduler
from policies.schedulers._common import decode_blocks


class SglangConfig(StrictConfig):
    block_size: int = Field(default=1, gt=0, description="tokens per KV page (SGLang page_size)")
    chunked_prefill_size: int = Field(default=8192, ge=0,
                                      description="most prompt tokens in one prefill batch; a prompt that does "
                                                  "not fit is cut to fill it (0: no chunking)")
    max_prefill_tokens: int = Field(default=16384, gt=0,
                                    description="prompt tokens of one prefill batch beyond its first request")
    max_running_requests: int | None = Field(default=None, gt=0,
                                             description="most running requests; None: SGLang's limit derived "
                                                         "from the KV pool size")
    schedule_conservativeness: float = Field(default=1.0, gt=0, description="scales the initial new_token_ratio")
    init_new_token_ratio: float = Field(default=0.7, gt=0, le=1,
                                        description="share of a running request's remaining output reserved")
    min_new_token_ratio_factor: float = Field(default=0.14, gt=0, le=1,
                                              description="the ratio's floor as a share of its start")
    new_token_ratio_decay_steps: int = Field(default=600, gt=0, description="decode steps from start to floor")
    retract_decode_steps: int = Field(default=20, ge=0,
                                      description="output tokens per kept request in the ratio after a retraction")
    clip_max_new_tokens: int = Field(default=4096, gt=0,
                                     description="most output tokens of one request counted in a reservation")


@register_scheduler("sglang", config=SglangConfig)
class SglangScheduler:
    """SGLang's scheduler (prefill first, chunked prefill, new_token_ratio KV reservation)."""

    steady_decode = True
    steady_min_free_blocks = 0

    def __init__(self, config: SglangConfig) -> None:
        self.config = config
        self.init_ratio = min(config.init_new_token_ratio * config.schedule_conservativeness, 1.0)
        self.min_ratio = min(self.init_ratio * config.min_new_token_ratio_factor, 1.0)
        self.decay = (self.init_ratio - self.min_ratio) / config.new_token_ratio_decay_steps
        self.new_token_ratio = self.init_ratio
        self.batch_full = False
        self._expect = 0  # requests running at the next call if none leaves the batch
        self._ref: tuple[RequestView, int] | None = None  # a request of the last decode plan, its output then
        self._retracted = False  # the last plan retracted: its step set the ratio instead of decaying it
        self._queued = False  # requests were left waiting (or were retracted) by the last plan
        self._admitting: set[int] = set()  # waiting requests the last plan admitted
        self._requeued: dict[int, tuple[int, int]] = {}  # rid -> (time, order) of its retraction, while it waits
        self._retractions = 0

    def max_running(self, view: SchedulerView) -> int:
        if self.config.max_running_requests is not None:
            return self.config.max_running_requests
        pool = view.kv.total_blocks * view.kv.block_size
        reqs = min(max(int(pool / max(1, view.max_model_len) * 512), 2048), 4096)
        return max(1, min(pool // 2, reqs))

    def _decode_steps(self, view: SchedulerView) -> int:
        """Decode steps run since the last plan (one plan may have run as a stretch of them)."""
        if self._ref is None:
            return 0
        req, then = self._ref  # the live request: every row of a decode plan decodes at each of its steps
        return max(0, req.num_generated - then - (1 if self._retracted else 0))

    def plan(self, view: SchedulerView) -> BatchPlan:
        steps = self._decode_steps(view)
        if steps:
            self.new_token_ratio = max(self.new_token_ratio - steps * self.decay, self.min_ratio)
        running = view.running
        if not running and (self.batch_full or not self._queued):
            # SGLang's loop found no batch (its queue empty, or a full batch just emptied by
            # update_running_batch): self_check_during_idle resets the ratio
            self.new_token_ratio = self.init_ratio
        if self.batch_full and (not running or len(running) < self._expect):  # a request left the batch
            self.batch_full = False
        self._ref, self._retracted = None, False
        plan = self._prefill(view)
        if plan is None:
            plan = self._decode(view)
        # only this scheduler's plans add running requests (its prefill chunks of waiting ones)
        admitted = sum(1 for c in plan.prefill if c.rid in self._admitting)
        if self._requeued:
            for rid in (*(c.rid for c in plan.prefill), *plan.reject):
                self._requeued.pop(rid, None)
        self._expect = len(running) - len(plan.preempt) + admitted
        self._queued = len(view.waiting) - admitted - len(plan.reject) + len(plan.preempt) > 0
        return plan

    def _prefill(self, view: SchedulerView) -> BatchPlan | None:
        cfg = self.config
        kv = view.kv
        bs = kv.block_size
        self._admitting: set[int] = set()
        chunked = [r for r in view.running if r.num_computed < r.prefill_target]
        if (self.batch_full or not view.waiting) and not chunked:
            return None
        decoding = [r for r in view.running if r.num_computed >= r.prefill_target] if chunked else view.running
        limit = self.max_running(view)
        if limit - len(decoding) <= 0 and not chunked:
            self.batch_full = True
            return None
        available = kv.free_blocks * bs
        clip = cfg.clip_max_new_tokens
        # rem_total_token_offset: what the running requests hold back
        total_offset = sum(min(r.max_new_tokens - r.num_generated, clip) for r in decoding) * self.new_token_ratio
        cur_offset = 0  # cur_rem_token_offset
        rem_input = cfg.max_prefill_tokens
        rem_chunk = cfg.chunked_prefill_size or None
        chunks: list[PrefillChunk] = []

        def ceil(t: int) -> int:
            return -(-t // bs) * bs

        for r in chunked:  # add_chunked_req (the rest of a prompt cut in the previous batch)
            room = min(rem_chunk, int(available - total_offset)) if rem_chunk is not None else r.prefill_remaining
            if room <= 0:  # sglang>=0.5.8: the chunk is added whatever the reservation says
                room = rem_chunk if rem_chunk is not None else r.prefill_remaining
            t = min(r.prefill_remaining, room)
            cut = t < r.prefill_remaining
            chunks.append(PrefillChunk(r.rid, t))
            t = ceil(t)
            total_offset += t + (0 if cut else min(r.max_new_tokens, clip))
            cur_offset += t
            rem_input -= t
            if rem_chunk is not None:
                rem_chunk -= t
        reject: list[int] = []
        pool = kv.total_blocks * bs
        for r in self._queue(view):
            if (r.prefill_target > view.max_model_len
                    or r.prefill_remaining + min(r.max_new_tokens - r.num_generated, clip) >= pool):
                # never admissible: SGLang refuses prompt + max_new_tokens >= context length at its API
                # (tokenizer_manager._validate_one_request) and cuts max_new_tokens to min(context, pool)
                # - 2 - prompt (scheduler.init_req_max_new_tokens); a cut output is not modelled: rejected
                reject.append(r.rid)
                continue
            if len(chunks) >= limit - len(decoding):  # SGLang counts can_run_list, the chunked request too
                self.batch_full = True
                break
            need = r.prefill_remaining
            total = need + min(max(r.max_new_tokens - r.num_generated, 0), clip)
            if total >= available - total_offset:
                self.batch_full = True  # NO_TOKEN
                break
            tokens = ceil(need)
            if tokens >= rem_input and chunks:
                break
            if rem_chunk is None or tokens <= rem_chunk:
                t, reserve = need, min(r.max_new_tokens, clip)
            else:
                t = rem_chunk // bs * bs
                if t <= 0:
                    break
                reserve = 0
            chunks.append(PrefillChunk(r.rid, t))
            self._admitting.add(r.rid)
            t = ceil(t)
            total_offset += t + reserve
            cur_offset += t
            rem_input -= t
            if rem_chunk is not None:
                rem_chunk -= t
            if available - total_offset <= 0 or available - cur_offset <= 0:
                self.batch_full = True  # NO_TOKEN
                break
            # a cut prompt leaves under a page of the chunk at most: the loop goes on (add_one_req may still
            # refuse the next request for tokens, marking the batch full) and cuts nothing more
            if rem_input <= 0 or (rem_chunk is not None and rem_chunk <= 0):
                break
        if chunks or reject:
            return BatchPlan(prefill=tuple(chunks), reject=tuple(reject))
        return None

    def _queue(self, view: SchedulerView) -> list[RequestView] | tuple[RequestView, ...]:
        """The waiting requests in SGLang's queue order. A retracted request is appended to the queue
        (``retract_decode`` -> ``_add_request_to_queue``; fcfs does not sort): behind those that arrived
        by its retraction, ahead of later ones. The serving loop puts it at the front."""
        if not self._requeued:
            return view.waiting
        back, rest = [], []
        for r in view.waiting:
            (back if r.rid in self._requeued else rest).append(r)
        if not back:  # none waits any more (finished elsewhere, moved)
            self._requeued.clear()
            return view.waiting
        back.sort(key=lambda r: self._requeued[r.rid])
        out: list[RequestView] = []
        i = 0
        for r in back:
            t = self._requeued[r.rid][0]
            while i < len(rest) and rest[i].arrival_ps <= t:
                out.append(rest[i])
                i += 1
            out.append(r)
        out.extend(rest[i:])
        return out

    def _decode(self, view: SchedulerView) -> BatchPlan:
        """``update_running_batch``: decode every running request, retracting while tokens are short."""
        kv = view.kv
        running = list(view.running)
        if not running:
            return BatchPlan()
        if type(kv) is KvView:  # every row past its prefill here: a row needs a block when its blocks are full
            bs = kv.block_size
            need = len(running) if bs == 1 else sum(1 for r in running if r.num_computed >= r.kv_blocks * bs)
        else:
            need = sum(decode_blocks(r, kv) for r in running)
        preempt: list[int] = []
        if need > kv.free_blocks:
            kept = sorted(running, key=lambda r: (r.num_generated, -r.prompt_tokens), reverse=True)
            free = kv.free_blocks
            while len(kept) > 1 and (not preempt or need > free):
                victim = kept.pop()
                preempt.append(victim.rid)
                self._requeued[victim.rid] = (view.now_ps, self._retractions)
                self._retractions += 1
                need -= decode_blocks(victim, kv)
                free += kv.blocks_freed_by(victim)
            decoded = sum(r.num_generated for r in kept)
            new_max = sum(r.max_new_tokens for r in kept)
            self.new_token_ratio = min(1.0, (decoded + self.config.retract_decode_steps * len(kept)) / (new_max + 1))
            self._retracted = True
            self.batch_full = False  # the batch shrank
            running = [r for r in running if r.rid not in set(preempt)]
        decode = tuple(r.rid for r in running)
        self._ref = (running[0], running[0].num_generated)
        return BatchPlan(decode=decode, preempt=tuple(preempt))
