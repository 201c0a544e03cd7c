"""What a training run writes: summary.json, scenario.resolved.yaml, trace.json, report.html.

The Chrome trace has one process per pipeline rank (one GPU of each stage; its tp x cp x dp peers
run the same timeline) with lanes for compute (forward / backward / optimizer), pipeline sends,
data-parallel collectives, PCIe copies and context-parallel K/V sends: the gaps on the compute lane
are the pipeline bubbles.
The report is one self-contained HTML page: the figures, the memory per GPU and an SVG timeline.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from simulator.training.step import TrainResult

LANES = {"compute": 0, "p2p": 1, "dp": 2, "pcie": 3, "cp": 4}
COLORS = {"F": "#4c78a8", "B": "#f58518", "o": "#54a24b", "p2p": "#b279a2", "dp": "#e45756", "pcie": "#9d755d",
          "cp": "#72b7b2"}


def chrome_trace(result: TrainResult) -> dict:
    events = []
    p = len(result.pipeline.stage_end_ps)
    for s in range(p):
        events.append({"ph": "M", "name": "process_name", "pid": s, "args": {"name": f"pipeline rank {s}"}})
        for lane, tid in LANES.items():
            events.append({"ph": "M", "name": "thread_name", "pid": s, "tid": tid, "args": {"name": lane}})
    for iv in result.pipeline.intervals:
        cat = iv.lane if iv.lane != "compute" else ("forward" if iv.name[0] == "F" else
                                                    "backward" if iv.name[0] == "B" else "optimizer")
        events.append({"ph": "X", "name": iv.name, "cat": cat, "pid": iv.rank, "tid": LANES[iv.lane],
                       "ts": iv.start_ps / 1e6, "dur": (iv.end_ps - iv.start_ps) / 1e6})
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": {"step_s": result.summary["step_s"]}}


def _svg_timeline(result: TrainResult, width: int = 1100, row: int = 22) -> str:
    pipe = result.pipeline
    p = len(pipe.stage_end_ps)
    total = max(pipe.step_ps, 1)
    scale = (width - 80) / total
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{p * row + 30}" '
             f'font-family="sans-serif" font-size="11">']
    for s in range(p):
        y = s * row + 4
        parts.append(f'<text x="2" y="{y + 13}">rank {s}</text>')
        parts.append(f'<rect x="70" y="{y}" width="{width - 80}" height="{row - 6}" fill="#eee"/>')
    for iv in pipe.intervals:
        if iv.lane != "compute":
            continue
        y = iv.rank * row + 4
        color = COLORS.get(iv.name[0], "#999")
        w = max(0.5, (iv.end_ps - iv.start_ps) * scale)
        parts.append(f'<rect x="{70 + iv.start_ps * scale:.2f}" y="{y}" width="{w:.2f}" height="{row - 6}" '
                     f'fill="{color}"><title>{html.escape(iv.name)}</title></rect>')
    parts.append(f'<text x="70" y="{p * row + 22}">0</text><text x="{width - 90}" y="{p * row + 22}">'
                 f'{pipe.step_ps / 1e9:.1f} ms</text></svg>')
    return "".join(parts)


def report_html(result: TrainResult) -> str:
    s = result.summary
    mem = s["memory_per_gpu"]
    rows = [("step time", f"{s['step_s'] * 1e3:.1f} ms"), ("tokens/s", f"{s['tokens_per_s']:,.0f}"),
            ("MFU / HFU", f"{s['mfu']:.1%} / {s['hfu']:.1%}"), ("TFLOP/s per GPU", f"{s['tflops_per_gpu']:.1f}"),
            ("bubble (rank 0)", f"{s['bubble_fraction']:.1%} (formula {s['bubble_fraction_formula']:.1%})"),
            ("micro-batches per replica", str(s["micro_batches"])),
            ("checkpoint stall", f"{s['checkpoint_stall_s']:.2f} s "
                                 f"(copy {s['checkpoint_copy_s']:.2f} s, SSD {s['checkpoint_ssd_write_s']:.2f} s)")]
    mrows = [(k.replace("_bytes", ""), f"{v / 2**30:.2f} GiB") for k, v in mem.items()]
    table = "".join(f"<tr><th>{html.escape(a)}</th><td>{html.escape(b)}</td></tr>" for a, b in rows)
    mtable = "".join(f"<tr><th>{html.escape(a)}</th><td>{html.escape(b)}</td></tr>" for a, b in mrows)
    lay = ", ".join(f"{k} {v}" for k, v in s["layout"].items())
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(s['name'])}</title>
<style>body{{font-family:sans-serif;margin:2em}}th{{text-align:left;padding-right:1em}}</style></head><body>
<h1>Training step: {html.escape(s['name'])}</h1>
<p>{html.escape(s['model'])} on {s['gpus']} x {html.escape(s['device'])}; {html.escape(lay)}</p>
<h2>Step</h2><table>{table}</table>
<h2>Memory per GPU (capacity {s['memory_capacity_bytes'] / 2**30:.0f} GiB)</h2><table>{mtable}</table>
<h2>One step per pipeline rank</h2>
<p>Blue: forward, orange: backward (recompute included), green: optimizer; grey gaps: pipeline bubbles.</p>
{_svg_timeline(result)}
</body></html>
"""


def write_training_results(result: TrainResult, resolved_yaml: str, out: Path, chrome: bool = True,
                           report: bool = True) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(result.summary, indent=2, default=float), encoding="utf-8")
    (out / "scenario.resolved.yaml").write_text(resolved_yaml, encoding="utf-8")
    if chrome:
        (out / "trace.json").write_text(json.dumps(chrome_trace(result)), encoding="utf-8")
    if report:
        (out / "report.html").write_text(report_html(result), encoding="utf-8")
