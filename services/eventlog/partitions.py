"""Partitions of the event log: how many, where each lives, which one holds a user.

A deployment splits its log into P partitions, fixed when it is created. Each partition
is an eventsourcing application of its own (its own table, notification sequence and
insert lock), so appends to different partitions never wait on one another, and each
is folded by one projector process at a time. A user's events all go to one partition,
chosen by a stable hash of (app, user): their state is folded in one place.

Positions (the read-your-writes tokens of the APIs and the `position` of every change)
name their partition: `partition << 48 | notification id`. With one partition that is
the notification id itself, so a single-partition deployment reads exactly as before.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

# Notification ids below 2**48 (280 trillion events per partition); partitions below 2**15.
POSITION_BITS = 48
_ID_MASK = (1 << POSITION_BITS) - 1
MAX_PARTITIONS = 1024
# Name of the single log of a one-partition deployment (table cohortflow_events).
LOG_NAME = "cohortflow"
# The key of a user known only by an anonymous id.
ANONYMOUS_PREFIX = "anonymous:"


def encode_position(partition: int, notification_id: int) -> int:
    """The position token of notification `notification_id` of `partition`."""
    return (partition << POSITION_BITS) | notification_id


def decode_position(position: int) -> tuple[int, int]:
    """(partition, notification id) of a position token."""
    return position >> POSITION_BITS, position & _ID_MASK


def partition_floor(position: int) -> int:
    """The first position token of the partition `position` names: its facts and ticks lie
    in [floor, position]. 0 in a one-partition deployment."""
    return (position >> POSITION_BITS) << POSITION_BITS


def partition_of(app_id: str, user_key: str, partitions: int) -> int:
    """The partition of a user: BLAKE2b-64 of "app, unit separator, key", modulo P.

    `user_key` is the user id, or `anonymous:<anonymous id>` for a user known only by an
    anonymous id. The function is part of the stored format: never change it.
    """
    if partitions == 1:
        return 0
    digest = hashlib.blake2b(f"{app_id}\x1f{user_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


def user_key(user_id: str, anonymous_id: str) -> str:
    return user_id if user_id else ANONYMOUS_PREFIX + anonymous_id


def log_name(partition: int, partitions: int) -> str:
    """Name of a partition's eventsourcing application (its table is `<name>_events`)."""
    return LOG_NAME if partitions == 1 else f"{LOG_NAME}_p{partition}"


class PlacementError(ValueError):
    """A placement that does not name one database for every partition."""


def parse_placement(text: str, partitions: int, home_url: str) -> tuple[str, ...]:
    """The database URL of each partition from COHORTFLOW_PLACEMENT.

    The setting maps partitions ("3") or inclusive ranges ("0-7") to database URLs, as a
    JSON object; partitions it does not name live in the home database. Empty: all do.
    """
    urls = [home_url] * partitions
    if not text.strip():
        return tuple(urls)
    try:
        mapping = json.loads(text)
    except ValueError as error:
        msg = f"COHORTFLOW_PLACEMENT is not JSON: {error}"
        raise PlacementError(msg) from error
    if not isinstance(mapping, Mapping):
        msg = 'COHORTFLOW_PLACEMENT must be a JSON object like {"0-3": "postgresql://..."}'
        raise PlacementError(msg)
    seen: set[int] = set()
    for span, url in mapping.items():
        if not isinstance(url, str) or not url.strip():
            msg = f"COHORTFLOW_PLACEMENT[{span!r}] must be a database URL"
            raise PlacementError(msg)
        first, sep, last = str(span).partition("-")
        try:
            lo, hi = int(first), int(last) if sep else int(first)
        except ValueError as error:
            msg = f"COHORTFLOW_PLACEMENT key {span!r} must be a partition or a range like 0-3"
            raise PlacementError(msg) from error
        if not 0 <= lo <= hi < partitions:
            msg = f"COHORTFLOW_PLACEMENT key {span!r} is outside partitions 0..{partitions - 1}"
            raise PlacementError(msg)
        for partition in range(lo, hi + 1):
            if partition in seen:
                msg = f"COHORTFLOW_PLACEMENT names partition {partition} twice"
                raise PlacementError(msg)
            seen.add(partition)
            urls[partition] = url.strip()
    return tuple(urls)


@dataclass(frozen=True)
class Deployment:
    """P partitions and the database of each; the home database holds what is shared
    (the deployment record, leases, identity links, campaign and console tables)."""

    partitions: int
    placement: tuple[str, ...]
    home_url: str

    def __post_init__(self) -> None:
        if not 1 <= self.partitions <= MAX_PARTITIONS:
            msg = f"partitions must be 1..{MAX_PARTITIONS}, got {self.partitions}"
            raise PlacementError(msg)
        if len(self.placement) != self.partitions:
            msg = f"placement names {len(self.placement)} databases for {self.partitions}"
            raise PlacementError(msg)

    @classmethod
    def single(cls, database_url: str) -> Deployment:
        return cls(1, (database_url,), database_url)

    def partition_of(self, app_id: str, user_key: str) -> int:
        return partition_of(app_id, user_key, self.partitions)

    def log_name(self, partition: int) -> str:
        return log_name(partition, self.partitions)

    def database_of(self, partition: int) -> str:
        return self.placement[partition]

    def databases(self) -> list[str]:
        """Every database that holds partitions, home first, each once."""
        out = [self.home_url] if self.home_url in self.placement else []
        for url in self.placement:
            if url not in out:
                out.append(url)
        return out

    def partitions_in(self, database_url: str) -> list[int]:
        return [p for p, url in enumerate(self.placement) if url == database_url]
