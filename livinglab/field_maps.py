"""LoRaWAN device identity and codec output mapping (CONTRACT.md section 6): `dev_eui` and `field_map`.

A LoRaWAN sensor is known by its DevEUI: 16 hex digits, compared without regard to case (stored lower-case). Its
network server's codec turns each uplink into an object such as `{"temperature": 21.5, "battery": 3.6}`; the
sensor's `field_map` says which members are readings:

```json
{"temperature": "temp", "no2_ppb": {"quantity": "no2", "unit": "ppb"}, "/air/pm25": "pm25", "pm10": null}
```

- a member name maps to a quantity name, or to `{"quantity": ..., "unit": ...}` when the codec reports another
  accepted unit;
- members named like a quantity of the sensor's kind map to it as well, unless the map has an entry of that name;
- `null` ignores a member (so a member named `pm10` that is not PM10 can be left out);
- a name starting with `/` is a JSON Pointer (RFC 6901) into nested codec output (`/air/pm25` reads
  `{"air": {"pm25": 12}}`; `~1` stands for `/` and `~0` for `~` inside a member name).

`compile_field_map` turns a sensor's map into the table the ingester looks members up in: one dictionary lookup per
member, whatever the map holds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from livinglab.domain import QUANTITIES, Kind

#: The grammar of a DevEUI (EUI-64 as 16 hex digits, any case).
DEV_EUI_PATTERN = r"^[0-9A-Fa-f]{16}$"
DEV_EUI_RE = re.compile(DEV_EUI_PATTERN)
#: Entries a field map may hold (a codec's output has a few dozen members at most).
MAX_FIELD_MAP_ENTRIES = 64
#: Longest member name or pointer.
MAX_MEMBER_NAME = 200
_POINTER_TOKEN = re.compile(r"(?:[^~]|~[01])*")
# Text the database cannot hold (NUL) and control characters have no place in a member name.
_FORBIDDEN_TEXT = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


def normalize_dev_eui(text: str) -> str:
    """A DevEUI as stored and looked up: lower-case."""
    return text.lower()


DevEui = Annotated[
    str,
    Field(
        pattern=DEV_EUI_PATTERN,
        min_length=16,
        max_length=16,
        description="LoRaWAN DevEUI, 16 hex digits (any case; stored lower-case, unique among sensors).",
        examples=["0004a30b001c0530"],
    ),
    AfterValidator(normalize_dev_eui),
]


def _check_member_name(name: str) -> str:
    if _FORBIDDEN_TEXT.search(name):
        raise ValueError("a member name may not hold control characters or lone surrogates")
    if name.startswith("/") and not all(_POINTER_TOKEN.fullmatch(t) for t in name[1:].split("/")):
        raise ValueError(f"{name!r} is not a JSON Pointer ('~' must be followed by 0 or 1)")
    return name


MemberName = Annotated[str, Field(min_length=1, max_length=MAX_MEMBER_NAME), AfterValidator(_check_member_name)]


class FieldTarget(BaseModel):
    """A codec member's quantity, and the unit the codec reports it in (default: the quantity's canonical unit)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    quantity: str = Field(min_length=1, max_length=32, description="A quantity name of CONTRACT.md section 1.")
    unit: str | None = Field(default=None, min_length=1, max_length=32, description="An accepted unit of it.")


#: A member's target as written in a field map: a quantity name, a quantity with a unit, or null (ignore it).
FieldMapValue = str | FieldTarget | None
FieldMap = dict[MemberName, FieldMapValue]


def field_map_problems(field_map: Mapping[str, FieldMapValue], kind: Kind) -> list[str]:
    """What is wrong with a field map for a sensor of `kind` (empty when nothing is)."""
    problems = []
    if len(field_map) > MAX_FIELD_MAP_ENTRIES:
        problems.append(f"at most {MAX_FIELD_MAP_ENTRIES} entries")
    for member, value in field_map.items():
        if value is None:
            continue
        target = FieldTarget(quantity=value) if isinstance(value, str) else value
        quantity = QUANTITIES.get(target.quantity)
        if quantity is None:
            problems.append(f"{member!r} maps to {target.quantity!r}, which is not a quantity")
        elif quantity.kind is not kind:
            problems.append(f"{member!r} maps to {target.quantity!r}, a {quantity.kind.value} quantity")
        elif target.unit is not None and target.unit not in quantity.units:
            accepted = ", ".join(quantity.units)
            problems.append(f"{member!r}: unit {target.unit!r} is not accepted for {quantity.name} ({accepted})")
    return problems


@dataclass(frozen=True, slots=True)
class Target:
    """Where a codec member's value goes: a quantity (name and code) and how to convert the value to its canonical
    unit (canonical = value * scale + offset)."""

    quantity: str
    code: int
    scale: float = 1.0
    offset: float = 0.0


@dataclass(frozen=True, slots=True)
class MemberMap:
    """A sensor's compiled field map.

    `members`: top-level member name -> Target, or None for a member the map ignores; names not in it map to nothing
    (or, when named like a quantity of the other kind, are a kind mismatch). `pointers`: (tokens, Target) read from
    nested output. `roots`: top-level members that pointers read into (not counted as ignored).
    """

    members: Mapping[str, Target | None]
    pointers: tuple[tuple[tuple[str, ...], Target], ...] = ()
    roots: frozenset[str] = frozenset()


def _target(value: str | FieldTarget) -> Target:
    target = FieldTarget(quantity=value) if isinstance(value, str) else value
    quantity = QUANTITIES[target.quantity]
    unit = quantity.units[target.unit] if target.unit is not None else None
    return Target(quantity.name, quantity.code, unit.scale if unit else 1.0, unit.offset if unit else 0.0)


def _pointer_tokens(pointer: str) -> tuple[str, ...]:
    return tuple(t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/"))


_DEFAULT_MEMBERS: dict[Kind, Mapping[str, Target | None]] = {
    kind: MappingProxyType({q.name: Target(q.name, q.code) for q in QUANTITIES.values() if q.kind is kind})
    for kind in Kind
}
#: The member map of a sensor without a field map: its kind's quantity names.
DEFAULT_MEMBER_MAPS: Mapping[Kind, MemberMap] = MappingProxyType(
    {kind: MemberMap(members) for kind, members in _DEFAULT_MEMBERS.items()}
)


def compile_field_map(field_map: Mapping[str, Any] | None, kind: Kind) -> MemberMap:
    """The lookup table of a sensor's field map (already validated for its kind; see `field_map_problems`)."""
    if not field_map:
        return DEFAULT_MEMBER_MAPS[kind]
    members: dict[str, Target | None] = dict(_DEFAULT_MEMBERS[kind])
    pointers: list[tuple[tuple[str, ...], Target]] = []
    for member, raw in field_map.items():
        value = FieldTarget.model_validate(raw) if isinstance(raw, dict) else raw
        if member.startswith("/"):
            if value is not None:
                pointers.append((_pointer_tokens(member), _target(value)))
        else:
            members[member] = None if value is None else _target(value)
    return MemberMap(MappingProxyType(members), tuple(pointers), frozenset(tokens[0] for tokens, _ in pointers))
