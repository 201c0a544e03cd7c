"""The report.html of a study run (``type: study``): its figures and its options, as tables.

A plain page without scripts: it opens offline and needs nothing beside it. Values are formatted
as in the serving report (``simulator.dashboard.fmt_value``).
"""

from __future__ import annotations

import html
from typing import Any

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:1.5em;margin-bottom:4px}h2{font-size:1.15em;margin-top:28px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:4px 10px;text-align:left}
th{background:#f4f4f4;font-weight:normal}td.num{text-align:right;font-variant-numeric:tabular-nums}
.meta{color:#666}
"""


def flat(d: dict, prefix: str = ""):
    """(dotted key, value) of a nested mapping, one pair per leaf."""
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from flat(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def _table(pairs: list[tuple[str, Any]]) -> str:
    from simulator.dashboard import fmt_value

    rows = []
    for k, v in pairs:
        text = ", ".join(fmt_value(x) for x in v) if isinstance(v, (list, tuple)) else fmt_value(v)
        rows.append(f"<tr><th>{html.escape(k)}</th><td class=num>{html.escape(text)}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def render_study_report(name: str, study: str, description: str, result: dict, options: dict,
                        version: str) -> str:
    """The page as one HTML string (deterministic: no timestamps, no wall-clock figures)."""
    title = html.escape(name)
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>hwsim study: {title}</title>", f"<style>{_CSS}</style>", "</head><body>",
             f"<h1>{title}</h1>",
             f"<p class=meta>study {html.escape(study)} · hwsim {html.escape(version)}</p>"]
    if description:
        parts.append(f"<p>{html.escape(description)}</p>")
    parts += ["<h2>Results</h2>", _table(list(flat(result))),
              "<h2>Options</h2>", _table(list(flat(options)))]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
