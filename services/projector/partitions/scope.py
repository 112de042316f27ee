"""Which partition a projection folds, and what that means for what it reads and writes."""

from __future__ import annotations

from dataclasses import dataclass

from services.eventlog.partitions import decode_position, encode_position, log_name


@dataclass(frozen=True)
class Scope:
    """One partition of `partitions`. The single scope (0 of 1) is a one-partition
    deployment, where everything reads and writes exactly as before partitions."""

    partition: int = 0
    partitions: int = 1

    @property
    def log_name(self) -> str:
        """The partition's log, also the name its position is tracked under."""
        return log_name(self.partition, self.partitions)

    @property
    def home(self) -> bool:
        """Partition 0 keeps the app-wide read models (segment definitions and versions)."""
        return self.partition == 0

    @property
    def single(self) -> bool:
        return self.partitions == 1

    def position(self, notification_id: int) -> int:
        """The position token (naming this partition) of one of its notifications."""
        return encode_position(self.partition, notification_id)

    def notification_id(self, position: int) -> int:
        partition, notification_id = decode_position(position)
        if partition != self.partition:
            msg = f"position {position} is of partition {partition}, not {self.partition}"
            raise ValueError(msg)
        return notification_id

    @property
    def first_position(self) -> int:
        """The lowest position token of this partition (facts of it lie from here on)."""
        return encode_position(self.partition, 0)

    @property
    def end_position(self) -> int:
        """The first position token past this partition."""
        return encode_position(self.partition + 1, 0)


SINGLE = Scope()
