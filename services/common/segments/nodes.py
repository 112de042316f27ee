"""The segment language's vocabulary and its parsed form: one frozen dataclass per condition.

`definition.parse` turns the readable dict form into these nodes; `compile.py` (live) and
`adapters/preview.py` (SQL) evaluate them. Nodes are values: equal definitions parse to
equal trees, which the replay and differential tests rely on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.eventlog import vocabulary

LIFECYCLE_STATES = frozenset(vocabulary.LIFECYCLE_STATES)
RFM_GROUPS = frozenset(vocabulary.RFM_GROUPS)
COMPARISONS = frozenset({"=", "!=", "<", "<=", ">", ">="})
OPERATORS = COMPARISONS | {"in", "contains", "exists", "starts_with"}
AGGREGATES = frozenset({"count", "sum", "min", "max", "avg"})
SEGMENT_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


# A typed value: str, float, bool, or a timestamp (TimeValue).
@dataclass(frozen=True)
class TimeValue:
    us: int


Scalar = str | float | bool | TimeValue


@dataclass(frozen=True)
class Filter:
    property: str
    op: str
    value: Scalar | tuple[Scalar, ...] | None

    def key(self) -> str:
        return f"{self.property}\x1e{self.op}\x1e{self.value!r}"


@dataclass(frozen=True)
class AllOf:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class AnyOf:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class NoneOf:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Trait:
    key: str
    op: str
    value: Scalar | tuple[Scalar, ...] | None


@dataclass(frozen=True)
class Geo:
    center: tuple[float, float] | None
    radius_km: float
    countries: frozenset[str]
    cities: frozenset[str]


@dataclass(frozen=True)
class Lifecycle:
    states: frozenset[str]


@dataclass(frozen=True)
class Rfm:
    groups: frozenset[str]


@dataclass(frozen=True)
class Events:
    name: str
    where: tuple[Filter, ...]
    window_us: int | None
    aggregate: str
    property: str
    op: str
    value: float


@dataclass(frozen=True)
class Recency:
    name: str
    where: tuple[Filter, ...]
    more_than_us: int | None
    less_than_us: int | None


@dataclass(frozen=True)
class FirstSeen:
    before_us: int | None
    after_us: int | None
    more_than_us: int | None
    less_than_us: int | None


@dataclass(frozen=True)
class Inaction:
    did: str
    where: tuple[Filter, ...]
    not_did: str
    within_us: int


@dataclass(frozen=True)
class SegmentRef:
    segment_id: str


Node = (
    AllOf
    | AnyOf
    | NoneOf
    | Trait
    | Geo
    | Lifecycle
    | Rfm
    | Events
    | Recency
    | FirstSeen
    | Inaction
    | SegmentRef
)


@dataclass(frozen=True)
class Definition:
    root: Node
    # Segments this one refers to.
    references: frozenset[str]
