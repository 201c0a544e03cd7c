"""Pydantic field types for quantities with units.

A field typed ``Bytes`` accepts ``"80GiB"`` and stores bytes as a float; a bare number is an
error naming the unit to give. Serialised back (``model_dump(mode="json")``) with a unit that
parses to exactly the same value.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, WithJsonSchema

from simulator.core.errors import UnitError
from simulator.core.units import DIMENSIONS, format_quantity, parse_quantity


def quantity_json_schema(dimension: str) -> dict:
    """JSON Schema of a quantity field: a string, a number followed by one of the dimension's units."""
    table, example = DIMENSIONS[dimension]
    units = "|".join(re.escape(u) for u in sorted(table, key=len, reverse=True) if u)
    number = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
    return {"type": "string", "pattern": rf"^\s*{number}\s*(?:{units})\s*$",
            "description": f"a {dimension} quantity with its unit, e.g. {example!r}", "examples": [example]}


def _quantity(dimension: str, positive: bool = False, nonneg: bool = True):
    def parse(v: object) -> float:
        try:
            out = parse_quantity(v, dimension)
        except UnitError as exc:
            raise ValueError(exc.message) from None
        if positive and out <= 0:
            raise ValueError(f"must be > 0, got {v!r}")
        if nonneg and out < 0:
            raise ValueError(f"must be >= 0, got {v!r}")
        return out

    return Annotated[
        float,
        BeforeValidator(parse),
        PlainSerializer(lambda x: format_quantity(x, dimension), return_type=str, when_used="json"),
        WithJsonSchema(quantity_json_schema(dimension)),
    ]


Bytes = _quantity("bytes")
BytesPerS = _quantity("bandwidth")
Hz = _quantity("frequency", positive=True)
Seconds = _quantity("time")
FlopsPerS = _quantity("flops")
Flop = _quantity("flop")
Watts = _quantity("power")
Joules = _quantity("energy")
PerS = _quantity("rate")
UsdPerHour = _quantity("price")

PositiveBytes = _quantity("bytes", positive=True)
PositiveBytesPerS = _quantity("bandwidth", positive=True)
PositiveFlopsPerS = _quantity("flops", positive=True)
PositiveSeconds = _quantity("time", positive=True)
PositivePerS = _quantity("rate", positive=True)


class StrictConfig(BaseModel):
    """Base of every plug-in config: unknown fields are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, validate_default=True)


class EmptyConfig(StrictConfig):
    """Config of a plug-in that takes no options."""
