"""Value types shared by every config model: durations, byte sizes, rates, and the strict base model.

They live in core so that routing/, plugins/ and experiments/ can declare their own config sections
without importing the rest of gateway/.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, PlainSerializer, WithJsonSchema


class StrictModel(BaseModel):
    """Frozen, unknown keys refused: the base of every config model."""

    model_config = ConfigDict(frozen=True, extra="forbid")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|m|h)\s*$")
_DURATION_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _finite(seconds: float) -> float:
    # YAML reads .nan and .inf as floats, and 400 digits overflow to inf: event-loop timers refuse NaN
    # (uvloop raises when the timer is armed, long after the config was accepted).
    if not math.isfinite(seconds):
        raise ValueError("a duration must be a finite number of seconds")
    return seconds


def parse_duration(value: Any) -> float:
    """'250ms' -> 0.25, '2s' -> 2.0, '1m' -> 60.0; plain numbers are seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number with a unit, like 250ms or 2s")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return _finite(float(value))
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return _finite(float(match.group(1)) * _DURATION_UNITS[match.group(2)])
    raise ValueError(f"invalid duration {value!r}: use a number with a unit (us, ms, s, m, h), like 250ms")


def format_duration(seconds: float) -> str:
    if seconds and seconds < 1 and (seconds * 1000).is_integer():
        return f"{int(seconds * 1000)}ms"
    return f"{seconds:g}s"


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "type": ["string", "number"],
            "pattern": r"^\d+(\.\d+)?(us|ms|s|m|h)$",
            "description": "a duration: 250ms, 2s, 1m (a bare number is seconds)",
        }
    ),
]

_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$")
_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "KB": 1000,
    "KiB": 1024,
    "MB": 1000**2,
    "MiB": 1024**2,
    "GB": 1000**3,
    "GiB": 1024**3,
}


def parse_size(value: Any) -> int:
    """'64KiB' -> 65536, '10MB' -> 10_000_000; plain integers are bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match:
            return int(match.group(1)) * _SIZE_UNITS[match.group(2)]
    raise ValueError(f"invalid size {value!r}: use bytes or a unit (KiB, MiB, GiB, KB, MB, GB), like 10MiB")


ByteSize = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema(
        {
            "type": ["string", "integer"],
            "pattern": r"^\d+(B|KB|KiB|MB|MiB|GB|GiB)?$",
            "description": "a size in bytes, or with a unit: 64KiB, 10MiB",
        }
    ),
]


@dataclass(frozen=True, slots=True)
class Rate:
    """A rate of `count` per `period` seconds."""

    count: float
    period: float

    @property
    def per_second(self) -> float:
        return self.count / self.period

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "min", 3600.0: "h", 86400.0: "d"}.get(self.period)
        count = f"{self.count:g}"
        return f"{count}/{unit}" if unit else f"{count}/{self.period:g}s"


_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour|d|day)\s*$")
_RATE_PERIODS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}


def parse_rate(value: Any) -> Rate:
    """'100/s' -> Rate(100, 1), '5000/min' -> Rate(5000, 60)."""
    if isinstance(value, Rate):
        return value
    if isinstance(value, str):
        match = _RATE.match(value)
        if match:
            count = float(match.group(1))
            if count <= 0:
                raise ValueError("a rate must be above zero")
            return Rate(count, _RATE_PERIODS[match.group(2)])
    raise ValueError(f"invalid rate {value!r}: use a count per unit, like 100/s or 5000/min")


RateValue = Annotated[
    Rate,
    BeforeValidator(parse_rate),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^\d+(\.\d+)?/(s|sec|second|m|min|minute|h|hour|d|day)$",
            "description": "a rate: 100/s, 5000/min",
        }
    ),
]


def check_redis_url(value: str) -> str:
    """A URL that redis-py can open (redis://, rediss:// or unix://), checked without connecting."""
    # The pool the gateway makes at start, made here to read the URL: redis-py's own parser, so the
    # check accepts exactly what starting will. A pool connects only when first used.
    from redis.asyncio import ConnectionPool

    try:
        ConnectionPool.from_url(value)
    except ValueError as exc:
        raise ValueError(f"invalid Redis URL: {exc}") from None
    return value


RedisUrl = Annotated[str, AfterValidator(check_redis_url)]
"""A Redis URL, like redis://host:6379/0; checked when the config loads, connected to only at start."""
