"""Alarm rules (CONTRACT.md section 5): the metrics a rule may watch, and the rule as written and validated.

A rule watches one metric of every sensor in its scope. Which sensors a metric applies to:

| metric | sensors | value per sensor (the newest one served) | window |
|---|---|---|---|
| `ispu` | air | the hourly ISPU (`ispu_hourly`, labelled `window_end`) | 1 h |
| `aqi` | air | the hourly US AQI (`aqi_hourly`, labelled `hour`) | 1 h |
| `degree_of_saturation` | traffic | the hour's DJ (`traffic_hourly`, labelled by the hour's start) | 1 h |
| `los_target_missed` | traffic | 1 when the hour's LOS is worse than its target, else 0 | 1 h |
| `mean_1m:<quantity>` | the quantity's kind | the 1-minute mean (`agg_1m`) | 1 min |
| `completeness_1h` | all | received / expected readings of the last complete hour | 1 h |
| `silence_s` | all | wall-clock seconds since the last accepted reading (else registration) | clock |

Validation is the same for the API, the YAML import and the default rule set: an unknown metric or quantity, or a
metric that does not apply to the kind of the scope's sensor, is an error naming the field.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from livinglab.domain import QUANTITIES, Kind
from livinglab.sensors import Identifier

Op = Literal[">", ">=", "<", "<="]
Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")

#: The prefix of the per-quantity metric.
MEAN_1M_PREFIX = "mean_1m:"


class Source(enum.StrEnum):
    """Where a metric's values come from (one value query per source)."""

    ISPU = "ispu"
    AQI = "aqi"
    DEGREE_OF_SATURATION = "degree_of_saturation"
    LOS_TARGET_MISSED = "los_target_missed"
    MEAN_1M = "mean_1m"
    COMPLETENESS_1H = "completeness_1h"
    SILENCE_S = "silence_s"


_KINDS: dict[Source, Kind | None] = {
    Source.ISPU: Kind.AIR,
    Source.AQI: Kind.AIR,
    Source.DEGREE_OF_SATURATION: Kind.TRAFFIC,
    Source.LOS_TARGET_MISSED: Kind.TRAFFIC,
    Source.COMPLETENESS_1H: None,
    Source.SILENCE_S: None,
}
_WINDOW_S: dict[Source, int] = {
    Source.ISPU: 3600,
    Source.AQI: 3600,
    Source.DEGREE_OF_SATURATION: 3600,
    Source.LOS_TARGET_MISSED: 3600,
    Source.MEAN_1M: 60,
    Source.COMPLETENESS_1H: 3600,
    Source.SILENCE_S: 0,
}


class RuleError(ValueError):
    """A rule that does not validate; `field` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class Metric:
    """A parsed metric name: its source, and for `mean_1m:<quantity>` the quantity."""

    name: str
    source: Source
    quantity: str | None = None

    @classmethod
    def parse(cls, name: str) -> Metric:
        """The metric called `name`, or RuleError(`metric`) for an unknown metric or quantity."""
        if name.startswith(MEAN_1M_PREFIX):
            quantity = name[len(MEAN_1M_PREFIX) :]
            if quantity not in QUANTITIES:
                known = ", ".join(QUANTITIES)
                raise RuleError("metric", f"unknown quantity {quantity!r} in {name!r} (known: {known})")
            return cls(name, Source.MEAN_1M, quantity)
        try:
            source = Source(name)
        except ValueError:
            raise RuleError("metric", f"unknown metric {name!r} (known: {', '.join(metric_names())})") from None
        if source is Source.MEAN_1M:
            raise RuleError("metric", "mean_1m needs a quantity: mean_1m:<quantity>, for example mean_1m:pm25")
        return cls(name, source)

    @property
    def kind(self) -> Kind | None:
        """The kind of sensor the metric applies to (None: every sensor)."""
        if self.quantity is not None:
            return QUANTITIES[self.quantity].kind
        return _KINDS[self.source]

    @property
    def window_s(self) -> int:
        """The width of the windows the metric's values are labelled by (0 for the wall clock of `silence_s`)."""
        return _WINDOW_S[self.source]

    def applies_to(self, kind: Kind | str) -> bool:
        return self.kind is None or self.kind == Kind(kind)


def metric_names() -> list[str]:
    """Every metric name a rule may use, `mean_1m:<quantity>` written once per quantity."""
    names = [s.value for s in Source if s is not Source.MEAN_1M]
    return names + [f"{MEAN_1M_PREFIX}{q}" for q in QUANTITIES]


def windows_needed(for_s: int, window_s: int) -> int:
    """How many consecutive windows, up to the newest, must meet the condition: enough to cover `for_s` (at least
    one). With 1-minute windows, `for_s` 0-60 asks for the newest window, 61-120 for the newest two, and so on."""
    if window_s <= 0:
        return 1
    return max(1, math.ceil(for_s / window_s))


def meets(op: str, value: float, threshold: float) -> bool:
    """Whether `value op threshold` holds."""
    if op == ">":
        return value > threshold
    if op == ">=":
        return value >= threshold
    if op == "<":
        return value < threshold
    return value <= threshold


class RuleBase(BaseModel):
    """The fields of a rule a client writes (everything but the id)."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=200)]
    metric: Annotated[str, Field(min_length=1, max_length=80, examples=["ispu", "mean_1m:pm25", "silence_s"])]
    op: Op
    threshold: float = Field(allow_inf_nan=False)
    clear_threshold: float | None = Field(
        default=None,
        allow_inf_nan=False,
        description="The alarm clears when the value no longer meets the condition with this number instead"
        " (default: threshold).",
    )
    for_s: int = Field(
        default=0, ge=0, le=30 * 86400, description="How long the condition must hold, in the data's own time."
    )
    severity: Severity
    channels: list[Identifier] = Field(default_factory=list, max_length=50)
    enabled: bool = True
    sensor_id: Identifier | None = None
    district: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    city: Identifier | None = None

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        try:
            Metric.parse(value)
        except RuleError as exc:
            raise ValueError(exc.message) from None
        return value

    @model_validator(mode="after")
    def _check_rule(self) -> Self:
        if self.clear_threshold is None:
            self.clear_threshold = self.threshold
        # Hysteresis must not make the alarm clear while the raising condition still holds.
        if self.op in (">", ">=") and self.clear_threshold > self.threshold:
            raise ValueError(f"clear_threshold must be at most threshold for op {self.op!r}")
        if self.op in ("<", "<=") and self.clear_threshold < self.threshold:
            raise ValueError(f"clear_threshold must be at least threshold for op {self.op!r}")
        if len(set(self.channels)) != len(self.channels):
            raise ValueError("channels lists a channel twice")
        if self.district is not None and self.city is None and self.sensor_id is None:
            raise ValueError("a district scope needs its city")
        if self.metric == Source.SILENCE_S and self.op in ("<", "<=") and self.for_s:
            raise ValueError("for_s applies to silence_s only with op '>' or '>='")
        return self

    @property
    def parsed_metric(self) -> Metric:
        return Metric.parse(self.metric)


class RuleSpec(RuleBase):
    """A rule with its id (server-made when absent, same pattern as a sensor id)."""

    rule_id: Identifier | None = None
