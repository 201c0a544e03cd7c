"""Turn pydantic validation errors into one line with a dotted path."""

from __future__ import annotations

import difflib

from pydantic import BaseModel, ValidationError

from simulator.core.errors import ConfigError


def dotted(prefix: str, loc: tuple) -> str:
    parts = [prefix] if prefix else []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        else:
            parts.append(str(item))
    return ".".join(parts)


def config_error(exc: ValidationError, prefix: str, model: type[BaseModel] | None = None) -> ConfigError:
    """The first error of ``exc`` as a ConfigError naming its dotted path."""
    err = exc.errors(include_url=False)[0]
    loc = tuple(x for x in err.get("loc", ()) if not (isinstance(x, str) and x.startswith("function-")))
    path = dotted(prefix, loc)
    kind = err.get("type", "")
    msg = str(err.get("msg", "invalid value"))
    for lead in ("Value error, ", "Assertion failed, "):
        if msg.startswith(lead):
            msg = msg[len(lead):]
    if kind == "extra_forbidden":
        field = str(loc[-1]) if loc else "?"
        known = _known_fields(model, loc[:-1])
        close = difflib.get_close_matches(field, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        msg = f"unknown field {field!r}{hint}" + (f" known: {', '.join(known)}" if known else "")
    elif kind == "missing":
        msg = "missing required field"
    else:
        value = err.get("input")
        if kind not in ("value_error",) and not isinstance(value, (dict, list)):
            msg = f"{msg} (got {value!r})"
    return ConfigError(msg, where=path or None)


def _known_fields(model: type[BaseModel] | None, loc: tuple) -> list[str]:
    cur = model
    for item in loc:
        if cur is None or not isinstance(item, str):
            return []
        field = cur.model_fields.get(item)
        ann = getattr(field, "annotation", None)
        cur = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return sorted(cur.model_fields) if cur is not None else []
