"""SSD / flash hardware kind: NAND array behind a controller and a host interface.

Models: a drive as ``channels`` NAND buses, each with ``dies_per_channel`` dies of
    ``planes_per_die`` planes; a plane reads one ``page_bytes`` page in ``read_latency_s`` (tR)
    and programs one in ``program_latency_s`` (tPROG); a channel bus moves
    ``channel_bw_bytes_per_s``; the host interface (PCIe lanes or UFS M-PHY) moves
    ``host_bw_bytes_per_s x host_efficiency``; the controller adds ``controller_latency_s`` per
    command and processes at most ``max_iops`` commands per second.
    One request of S bytes at queue depth 1 is a page pipeline: controller + tR + the first page
    over the channel and the host link, then the rest streams at the drive's peak rate
    (``latency_s``). The peak request rate X* is the tightest of the operational-analysis bounds
    (host link, channel buses, planes busy tR per touched page, controller IOPS). At queue depth
    q the drive is a closed system of q requests; throughput follows the balanced-job
    interpolation X(q) = X* q / (q + N* - 1) with N* = X* R0, which meets both asymptotic bounds
    (X(1) = 1/R0, X(inf) = X*), and the latency inside the device follows from Little's law,
    R(q) = q / X(q). Small random reads are thus far slower than large sequential ones: each
    touches a whole page for tR but moves only S bytes. Writes are absorbed by the array at the
    program rate divided by the write-amplification factor. An optional in-storage compute unit
    (computational storage, InstInfer) has its own FLOP rate and reads flash at the internal
    bandwidth, without crossing the host link.
Ignores: garbage-collection pauses (only their average cost, through write amplification), SLC
    caching dynamics (a preset states which regime its program latency describes), read retry and
    ECC decode time, thermal throttling, multi-queue host CPU cost, die-level scheduling detail.
Sources: ONFI/Toggle NAND timing model (Agrawal et al., "Design tradeoffs for SSD performance",
    USENIX ATC 2008); operational-analysis bounds (Lazowska et al., "Quantitative System
    Performance", 1984, ch. 5); per-preset datasheet numbers cited in ``presets/ssd/*.yaml``.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from simulator.config.quantities import (
    FlopsPerS,
    PositiveBytes,
    PositiveBytesPerS,
    Seconds,
    StrictConfig,
    Watts,
)
from simulator.core.registry import register_hardware


class SsdConfig(StrictConfig):
    name: str
    interface: Literal["nvme", "ufs", "sata"] = "nvme"
    capacity_bytes: PositiveBytes
    channels: int = Field(gt=0)
    dies_per_channel: int = Field(gt=0)
    planes_per_die: int = Field(default=2, gt=0)
    page_bytes: PositiveBytes = Field(default="16KiB")
    read_latency_s: Seconds = Field(description="tR: array read of one page into the plane's register")
    program_latency_s: Seconds = Field(description="tPROG: program of one page")
    channel_bw_bytes_per_s: PositiveBytesPerS = Field(description="NAND bus rate per channel")
    host_bw_bytes_per_s: PositiveBytesPerS = Field(description="host interface after line encoding")
    host_efficiency: float = Field(default=0.88, gt=0, le=1, description="share of the host link left after "
                                                                         "protocol overhead")
    controller_latency_s: Seconds = Field(default="10us", description="per command: protocol, FTL lookup")
    max_iops: float = Field(default=1e6, gt=0, description="controller command-rate limit, commands/s")
    max_queue_depth: int = Field(default=1024, gt=0, description="outstanding commands the drive accepts")
    write_amplification: float = Field(default=1.0, ge=1, description="NAND bytes programmed per host byte")
    knee_sharpness: float = Field(default=4.0, ge=1, description="k of the smooth min of the queue-depth bounds")
    compute_flops_per_s: FlopsPerS | None = Field(default=None, description="in-storage compute unit, if any")
    power_w: Watts | None = None

    # -- derived --------------------------------------------------------------------------
    @property
    def planes(self) -> int:
        return self.channels * self.dies_per_channel * self.planes_per_die

    @property
    def host_rate(self) -> float:
        return self.host_bw_bytes_per_s * self.host_efficiency

    @property
    def internal_read_bw(self) -> float:
        """Bytes/s the NAND array and its buses can deliver (inside the drive)."""
        return min(self.channels * self.channel_bw_bytes_per_s, self.planes * self.page_bytes / self.read_latency_s)


@register_hardware("ssd", config=SsdConfig, presets="presets/ssd")
class Ssd:
    """An SSD: a NAND array behind a controller and a host interface, with queueing."""
    def __init__(self, config: SsdConfig) -> None:
        self.config = config

    # -- reads ----------------------------------------------------------------------------
    def pages_touched(self, size_bytes: float) -> int:
        return max(1, math.ceil(size_bytes / self.config.page_bytes))

    def peak_iops(self, size_bytes: float, write: bool = False) -> float:
        """X*: requests/s at unbounded queue depth (the tightest bound)."""
        c = self.config
        s = float(size_bytes)
        pages = self.pages_touched(s)
        array_s = c.program_latency_s * c.write_amplification if write else c.read_latency_s
        nand_bytes = s * (c.write_amplification if write else 1.0)
        bounds = [c.host_rate / s, c.channels * c.channel_bw_bytes_per_s / nand_bytes,
                  c.planes / (pages * array_s), c.max_iops]
        return min(bounds)

    def latency_s(self, size_bytes: float, write: bool = False) -> float:
        """R0: one request alone in the drive (queue depth 1)."""
        c = self.config
        s = float(size_bytes)
        first = min(s, c.page_bytes)
        array_s = c.program_latency_s if write else c.read_latency_s
        fill = c.controller_latency_s + array_s + first / c.channel_bw_bytes_per_s + first / c.host_rate
        # the rest of a large request streams over the planes it is striped across
        stream_bw = self.peak_iops(s, write) * s if s > first else float("inf")
        one_request_bw = min(stream_bw, self._striped_bw(s, write))
        return fill + (s - first) / one_request_bw

    def _striped_bw(self, size_bytes: float, write: bool) -> float:
        """Bandwidth of one request striped over the planes its pages land on."""
        c = self.config
        units = min(self.pages_touched(size_bytes), c.planes)
        array_s = c.program_latency_s * c.write_amplification if write else c.read_latency_s
        chans = min(self.pages_touched(size_bytes), c.channels)
        return min(units * c.page_bytes / array_s, chans * c.channel_bw_bytes_per_s, c.host_rate)

    def iops(self, size_bytes: float, queue_depth: int, write: bool = False) -> float:
        """X(q): requests/s with ``queue_depth`` requests outstanding (closed loop)."""
        if queue_depth < 1:
            raise ValueError("queue_depth must be >= 1")
        q = min(queue_depth, self.config.max_queue_depth)
        x_star = self.peak_iops(size_bytes, write)
        r0 = self.latency_s(size_bytes, write)
        k = self.config.knee_sharpness
        return max(1.0 / r0, ((q / r0) ** -k + x_star ** -k) ** (-1.0 / k))

    def throughput_bytes_per_s(self, size_bytes: float, queue_depth: int, write: bool = False) -> float:
        return self.iops(size_bytes, queue_depth, write) * size_bytes

    def response_s(self, size_bytes: float, queue_depth: int, write: bool = False) -> float:
        """R(q): time a request spends in the drive at queue depth q (Little's law, R = q / X)."""
        q = min(queue_depth, self.config.max_queue_depth)
        return q / self.iops(size_bytes, q, write)

    def read_s(self, total_bytes: float, request_bytes: float, queue_depth: int, write: bool = False) -> float:
        """Time to move ``total_bytes`` as requests of ``request_bytes`` kept ``queue_depth`` deep."""
        if total_bytes <= 0:
            return 0.0
        n = math.ceil(total_bytes / request_bytes)
        return n / self.iops(request_bytes, min(n, queue_depth), write)

    def write_s(self, total_bytes: float, request_bytes: float, queue_depth: int) -> float:
        return self.read_s(total_bytes, request_bytes, queue_depth, write=True)

    # -- computational storage -------------------------------------------------------------
    def in_storage_s(self, flops: float, flash_bytes: float) -> float:
        """Time for the in-storage unit to run ``flops`` over ``flash_bytes`` read from NAND
        (roofline: compute or internal bandwidth, whichever binds)."""
        c = self.config
        if c.compute_flops_per_s is None:
            raise ValueError(f"{c.name} has no in-storage compute unit")
        return max(flops / c.compute_flops_per_s, flash_bytes / c.internal_read_bw)
