"""The cluster controller: a policy over every replica, and live migration (the mechanism).

Each call (every ``interval``, and on events when ``on_events``; at most one event call per instant)
builds a :class:`policies.controllers.ControllerView`, asks the policy for actions and checks each
one before acting (``PolicyError`` naming the controller and the request or replica).

Live migration (Llumnix): the destination reserves KV blocks for the request's context; stage 1
copies the KV computed so far out of the source's migration port and into the destination's (each a
processor-sharing link: concurrent migrations out of one replica, or into one, share its port; a
stage ends when the slower of its two shares has carried it) while the request keeps decoding on the
source; each later stage copies the tokens decoded during the previous one. When what is left is at
most ``LAST_STAGE_TOKENS`` (or after ``MAX_STAGES`` stages), the source takes the request out of
its batch at its next iteration boundary (the stall starts), the rest is copied, the source's blocks
are freed and the request joins the destination's batch at its next iteration. A migration whose
request finishes or is preempted on the source meanwhile, or whose destination has no room for the
final context, is aborted and its reservation returned. Stages are recorded as KV transfer events;
``log`` keeps (rid, src, dst, start, end, stages, stall, bytes, outcome) per migration.
A steal moves a waiting request with nothing computed to another queue at the source's next
iteration boundary; drain/resume stop/restart routing arrivals to a replica.

Models: per-GPU KV bytes over one GPU's link (tensor-parallel shards move in parallel), link
    bandwidth x efficiency and latency from ``cluster.kv_transfer.link``.
Ignores: the handshake messages; the copy's interference with the source's HBM traffic.
Sources: Sun et al., "Llumnix" (OSDI 2024), Section 4.2 (multi-stage live migration).
"""

from __future__ import annotations

import simpy

from simulator.core.clock import s_to_ps
from simulator.core.errors import ConfigError, HwsimError, PolicyError
from simulator.core.events import EventKind
from simulator.core.request import RUNNING, WAITING, Request
from simulator.core.resources import SharedBandwidth

WHERE = "cluster.controller"
LAST_STAGE_TOKENS = 16  # tokens left for the stop-and-copy stage (about one block)
MAX_STAGES = 8


class Migration:
    __slots__ = ("req", "src", "dst", "reserved", "copied", "stages", "start_ps", "stall_ps", "nbytes",
                 "preemptions", "done")

    def __init__(self, req: Request, src, dst, reserved: int, now: int) -> None:
        self.req, self.src, self.dst, self.reserved = req, src, dst, reserved
        self.copied = 0
        self.stages = 0
        self.start_ps = now
        self.stall_ps = 0
        self.nbytes = 0.0
        self.preemptions = req.num_preemptions
        self.done = False


class ClusterController:
    def __init__(self, cluster, policy, name: str, config, kv_bytes_per_token: float, link_bw: float,
                 link_latency_ps: int, total_requests: int) -> None:
        self.cluster = cluster
        self.env = cluster.env
        self.policy = policy
        self.name = name
        self.interval_ps = s_to_ps(config.interval)
        self.on_events = config.on_events
        self.kv_bytes_per_token = kv_bytes_per_token
        self.links = {rep.index: SharedBandwidth(self.env, link_bw, latency_ps=link_latency_ps,
                                                 name=f"migration-link-{rep.index}") for rep in cluster.replicas}
        self.out_links = {rep.index: SharedBandwidth(self.env, link_bw, latency_ps=link_latency_ps,
                                                     name=f"migration-out-{rep.index}") for rep in cluster.replicas}
        self.migrations: dict[int, Migration] = {}
        self.draining: set[int] = set()
        self.log: list[tuple] = []
        self.calls = 0
        self.steals = 0
        self._last_event_ps = -1
        self._queued = False
        for rep in cluster.replicas:
            rep.controller = self
        self.dispatches = callable(getattr(policy, "dispatch", None))
        cluster.draining = self.draining
        self.total = total_requests
        self._proc = self.env.process(self._ticks())

    # -- when the policy is asked ---------------------------------------------------------
    def _ticks(self):
        try:
            while self.cluster.done < self.total:
                yield self.env.timeout(self.interval_ps)
                self.call("tick")
        except simpy.Interrupt:  # every request has left: the periodic calls end with the run
            return

    def notify(self, event: str) -> None:
        """An event on a replica: call the policy once at this instant, after the current step."""
        if self.cluster.done >= self.total:
            if self._proc.is_alive and self._proc is not self.env.active_process:
                self._proc.interrupt()
            return
        if not self.on_events or self._queued or self._last_event_ps == self.env.now:
            return
        self._queued = True
        self.env.timeout(0).callbacks.append(lambda _ev: self._event_call(event))

    def _event_call(self, event: str) -> None:
        self._queued = False
        self._last_event_ps = self.env.now
        self.call(event)

    def view(self, event: str):
        from policies.controllers import ControllerView, ReplicaState

        states = []
        outgoing = {m.src.index: set() for m in self.migrations.values()}
        incoming = {m.dst.index: set() for m in self.migrations.values()}
        for rid, m in self.migrations.items():
            outgoing[m.src.index].add(rid)
            incoming[m.dst.index].add(rid)
        for rep in self.cluster.replicas:
            by_class: dict[int, int] = {}
            for r in rep.waiting:
                by_class[r.prefix_id] = by_class.get(r.prefix_id, 0) + 1
            kvm = rep.kvm
            tree = getattr(kvm.cache, "tree", None)
            waiting = tuple(r for r in rep.waiting if r.rid not in rep.outgoing) if rep.outgoing else tuple(rep.waiting)
            states.append(ReplicaState(rep.index, waiting, tuple(rep.running), kvm.free, kvm.total_blocks,
                                       kvm.block_size, sum(r.num_computed for r in rep.running),
                                       rep.index in self.draining, frozenset(outgoing.get(rep.index, ())),
                                       frozenset(incoming.get(rep.index, ())), by_class,
                                       tree.size if tree is not None else 0))
        return ControllerView(self.env.now, tuple(states), event)

    def call(self, event: str) -> None:
        self.calls += 1
        view = self.view(event)
        try:
            actions = self.policy.decide(view)
        except HwsimError:
            raise
        except Exception as exc:  # a bug in a (user) controller is reported against it
            raise PolicyError(self.name, f"decide() raised {type(exc).__name__}: {exc}") from exc
        for a in actions or ():
            self.apply(a)

    def dispatch(self, req: Request) -> int | None:
        """The replica the policy dispatches an arriving ``req`` to (None: the router chooses)."""
        try:
            idx = self.policy.dispatch(req, self.view("dispatch"))
        except HwsimError:
            raise
        except Exception as exc:
            raise PolicyError(self.name, f"dispatch() raised {type(exc).__name__}: {exc}") from exc
        if idx is None:
            return None
        self._replica(idx, f"dispatch of request {req.rid}")
        if idx in self.draining:
            raise PolicyError(self.name, f"dispatches request {req.rid} to replica {idx}, which is draining")
        return int(idx)

    # -- actions ---------------------------------------------------------------------------
    def _replica(self, i, what: str):
        reps = self.cluster.replicas
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(reps):
            raise PolicyError(self.name, f"{what} names replica {i!r}; valid: 0..{len(reps) - 1}")
        return reps[i]

    def apply(self, a) -> None:
        from policies.controllers import Drain, Migrate, Resume, Steal

        if isinstance(a, Migrate):
            self.migrate(a.rid, a.src, a.dst)
        elif isinstance(a, Steal):
            self.steal(a.rid, a.src, a.dst)
        elif isinstance(a, Drain):
            self._replica(a.replica, "drain")
            self.draining.add(a.replica)
        elif isinstance(a, Resume):
            self._replica(a.replica, "resume")
            self.draining.discard(a.replica)
        else:
            raise PolicyError(self.name, f"returned {a!r}, not a Migrate, Steal, Drain or Resume action")

    def migrate(self, rid: int, src_i: int, dst_i: int) -> None:
        src, dst = self._replica(src_i, f"migrate of request {rid}"), self._replica(dst_i, f"migrate of request {rid}")
        r = src.by_id.get(rid)
        if r is None or r.state != RUNNING or r not in src.running:
            raise PolicyError(self.name, f"migrates request {rid}, which is not running on replica {src_i}")
        if rid in self.migrations:
            raise PolicyError(self.name, f"migrates request {rid}, which is already migrating")
        if r.in_prefill:
            raise PolicyError(self.name, f"migrates request {rid}, which has not finished its prefill")
        if src_i == dst_i:
            raise PolicyError(self.name, f"migrates request {rid} from replica {src_i} to itself")
        if dst_i in self.draining:
            raise PolicyError(self.name, f"migrates request {rid} to replica {dst_i}, which is draining")
        need = dst.kvm.blocks_for(r.num_computed + 1)
        if need > dst.kvm.free:
            raise PolicyError(self.name, f"migrates request {rid} to replica {dst_i}, which has {dst.kvm.free} free "
                                         f"KV blocks; the request needs {need}")
        dst.kvm.reserve(need)
        m = self.migrations[rid] = Migration(r, src, dst, need, self.env.now)
        self.env.process(self._run(m))

    def steal(self, rid: int, src_i: int, dst_i: int) -> None:
        src, dst = self._replica(src_i, f"steal of request {rid}"), self._replica(dst_i, f"steal of request {rid}")
        r = src.by_id.get(rid)
        if r is None or r.state != WAITING or r not in src.waiting:
            raise PolicyError(self.name, f"steals request {rid}, which is not waiting on replica {src_i}")
        if r.num_computed or r.kv_blocks or r.rid in src.kvm.offload_swapped():
            raise PolicyError(self.name, f"steals request {rid}, which has KV on replica {src_i} (migrate it instead)")
        if src_i == dst_i or dst_i in self.draining or rid in src.outgoing:
            raise PolicyError(self.name, f"steals request {rid} to replica {dst_i}: same replica, draining, or "
                                         f"already moving")
        src.outgoing[rid] = dst
        self.steals += 1
        src._poke()

    # -- the migration process -------------------------------------------------------------
    def _alive(self, m: Migration) -> bool:
        r = m.req
        return r.state == RUNNING and r.replica == m.src.index and r.num_preemptions == m.preemptions

    def _abort(self, m: Migration, why: str) -> None:
        m.dst.kvm.unreserve(m.reserved)
        del self.migrations[m.req.rid]
        self.log.append((m.req.rid, m.src.index, m.dst.index, m.start_ps, self.env.now, m.stages, 0, m.nbytes, why))
        m.dst._poke()

    def _copy(self, m: Migration, tokens: int):
        nbytes = tokens * self.kv_bytes_per_token
        rec = self.cluster.recorder
        rec.emit(self.env.now, EventKind.KV_TRANSFER_STARTED, m.dst.index, m.req.rid, int(nbytes))
        # the bytes leave the source's port and enter the destination's: each port is shared by the
        # copies through it, and a stage ends when the slower of its two shares has carried them
        yield self.env.all_of([self.out_links[m.src.index].transfer(nbytes), self.links[m.dst.index].transfer(nbytes)])
        m.copied += tokens
        m.stages += 1
        m.nbytes += nbytes

    def _run(self, m: Migration):
        r = m.req
        while True:
            yield from self._copy(m, r.num_computed - m.copied)
            if not self._alive(m):
                self._abort(m, "ended on source")
                return
            if r.num_computed - m.copied <= LAST_STAGE_TOKENS or m.stages >= MAX_STAGES:
                break
        detached = self.env.event()
        m.src.detach[r.rid] = detached
        m.src._poke()
        ok = yield detached
        if not ok:
            self._abort(m, "ended on source")
            return
        need = m.dst.kvm.blocks_for(r.num_computed)
        if need > m.reserved:
            if need - m.reserved > m.dst.kvm.free:  # no room for the final context: back to the source
                m.src.accept(r)
                m.src.outstanding += r.max_new_tokens - r.num_generated
                self._abort(m, "no room at destination")
                return
            m.dst.kvm.reserve(need - m.reserved)
            m.reserved = need
        stall0 = self.env.now
        yield from self._copy(m, r.num_computed - m.copied)
        m.stall_ps = self.env.now - stall0
        m.src.kvm.release(r)  # the source's copy is no longer needed
        m.src._poke()
        m.dst.kvm.unreserve(m.reserved)
        m.dst.kvm.grow(r, 0)
        m.dst.outstanding += r.max_new_tokens - r.num_generated
        del self.migrations[r.rid]
        self.log.append((r.rid, m.src.index, m.dst.index, m.start_ps, self.env.now, m.stages, m.stall_ps, m.nbytes,
                         "migrated"))
        now = self.env.now
        self.cluster.recorder.emit(now, EventKind.KV_TRANSFERRED, m.dst.index, r.rid, now - m.start_ps)
        m.dst.accept(r)
        self.notify("migrated")

    def stats(self) -> dict:
        done = [e for e in self.log if e[8] == "migrated"]
        return {"controller_calls": self.calls, "migrations": len(done),
                "migrations_aborted": len(self.log) - len(done),
                "migration_stages": sum(e[5] for e in done), "migration_bytes": sum(e[7] for e in done),
                "migration_stall_s": sum(e[6] for e in done) / 1e12, "steals": self.steals}


def leave(rep) -> None:
    """Requests the controller moves away leave at this iteration boundary: a migrating one
    leaves the batch (its KV stays here until the last stage is copied), a stolen one the queue."""
    for rid, ev in rep.detach.items():
        r = rep.by_id.get(rid)
        ok = r is not None and r.state == RUNNING and r in rep.running
        if ok:
            rep.running.remove(r)
            del rep.by_id[rid]
            r.state = WAITING
            rep.outstanding -= r.max_new_tokens - r.num_generated
        ev.succeed(ok)
    rep.detach.clear()
    for rid, dst in rep.outgoing.items():
        r = rep.by_id.get(rid)
        if r is not None and r.state == WAITING and r in rep.waiting and not r.num_computed:
            rep.waiting.remove(r)
            del rep.by_id[rid]
            rep.outstanding -= r.prompt_tokens + r.max_new_tokens
            dst.submit(r)
    rep.outgoing.clear()


def attach_controller(sim) -> None:
    """Give the cluster of ``sim`` the scenario's controller (``cluster.controller``), if any."""
    block = sim.scenario.spec.cluster.controller
    if block is None:
        return
    from pydantic import ValidationError

    from policies.controllers import CONTROLLERS, ControllerConfig
    from simulator.config.errors import config_error
    from simulator.config.loader import resolve_component

    comp = resolve_component(block, CONTROLLERS, WHERE, base_dir=sim.scenario.base_dir)
    cfg = comp.config
    if not isinstance(cfg, ControllerConfig):  # an out-of-tree class without its own Config: the common fields
        data = {k: v for k, v in (block.items() if isinstance(block, dict) else ()) if k != "kind"}
        try:
            cfg = ControllerConfig.model_validate(data)
        except ValidationError as exc:
            raise config_error(exc, WHERE, ControllerConfig) from None
    for rep in sim.cluster.replicas:
        if rep.kvm.shares or rep.kvm.capped or rep.pipeline is not None or rep.role != "both":
            raise ConfigError("a cluster controller needs replicas of role both with the paged KV mechanism and "
                              "no pipeline parallelism", where=WHERE)
        rep.steady = False  # the controller reads every replica's requests at any instant: no decode stretches
    from simulator.core import registry as reg

    lc = resolve_component({"kind": "link", "preset": cfg.link}, reg.HARDWARE, f"{WHERE}.link",
                           base_dir=sim.scenario.base_dir)
    link = lc.config
    mem = sim.mem
    ctl = ClusterController(sim.cluster, comp.cls(cfg), comp.kind, cfg, mem.kv_bytes_per_token,
                            link.bw_bytes_per_s * link.efficiency, s_to_ps(link.latency_s), len(sim.table))
    sim.cluster.controller = ctl
