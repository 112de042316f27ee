"""Personal fields of log events, sealed with their user's key (crypto-shredding).

An EventTracked keeps its ids, name, times and the properties named "clear" (the RFM
amount: see below) readable; its other properties and its context are sealed. A
UserIdentified keeps its ids and times; its traits, contact addresses, consents, time
zone and location are sealed. The sealed form is one string in the event's `sealed`
field: "<key id hex>.<base64 of nonce + AES-256-GCM ciphertext>", the plaintext the
JSON of the sealed fields, the event's log id as associated data (a sealed blob cannot
be moved onto another event).

The key belongs to the event's subject: its user id, else `anonymous:<anonymous id>`.
Destroying the key erases every sealed field of the subject's events: `unseal` then
gives the event with those fields empty and `sealed == ERASED`. Events stored before
sealing existed have `sealed == ""` and read as they are.

Why some properties stay clear: the RFM cut points are quantiles over every purchaser
of an app, so a purchase amount that vanished on erasure would move other users' RFM
scores on a rebuild. The amount is a number with no meaning outside the app, kept like
the event's name and time.
"""

from __future__ import annotations

import base64
import os
import re
import uuid
from collections.abc import Collection, Iterable
from typing import Any, Protocol

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.eventlog.events import EventTracked, UserIdentified
from services.eventlog.partitions import user_key

# `sealed` of an event whose key was destroyed (after `unseal`).
ERASED = "erased"
KEY_BYTES = 32
_NONCE_BYTES = 12
# Properties kept clear by default: the default RFM amount property.
DEFAULT_CLEAR_PROPERTIES = frozenset({"revenue"})

_TRACK_FIELDS = ("properties", "time_properties", "context")
_IDENTIFY_FIELDS = ("traits", "time_traits", "contact", "consents", "timezone", "location")

Sealable = EventTracked | UserIdentified


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def subject_of(event: Sealable) -> str:
    """Whose key seals the event: the user id, else `anonymous:<anonymous id>`."""
    return user_key(event.user_id, event.anonymous_id)


def seal(
    event: Sealable,
    key_id: uuid.UUID,
    key: bytes,
    clear: Collection[str] = DEFAULT_CLEAR_PROPERTIES,
) -> Sealable:
    """The event as stored: its personal fields sealed with `key` (named `key_id`)."""
    secret: dict[str, Any] = {}
    empty: dict[str, Any] = {}
    if isinstance(event, EventTracked):
        kept = {k: v for k, v in event.properties.items() if k in clear and _number(v)}
        props = {k: v for k, v in event.properties.items() if k not in kept}
        fields = {"properties": props, "time_properties": event.time_properties}
        fields["context"] = event.context
        empty["properties"] = kept
    else:
        fields = {name: getattr(event, name) for name in _IDENTIFY_FIELDS}
    for name, value in fields.items():
        if value:
            secret[name] = value
        empty.setdefault(name, "" if isinstance(value, str) else {})
    if not secret:
        return event
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, orjson.dumps(secret), event.originator_id.bytes)
    text = f"{key_id.hex}.{base64.b64encode(nonce + sealed).decode()}"
    empty["sealed"] = text
    return _with(event, empty)


def key_id_of(event: object) -> uuid.UUID | None:
    """The key that sealed the event (None if it is not sealed)."""
    sealed = getattr(event, "sealed", "")
    if not sealed or sealed == ERASED:
        return None
    return uuid.UUID(hex=sealed.partition(".")[0])


def unseal(event: Sealable, key: bytes | None) -> Sealable:
    """The event with its personal fields back; with `key` None (destroyed), with them
    empty and `sealed == ERASED`. Raises if the blob does not match its key or event."""
    if key is None:
        return _with(event, {"sealed": ERASED})
    blob = base64.b64decode(event.sealed.partition(".")[2])
    plain = AESGCM(key).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], event.originator_id.bytes)
    fields = orjson.loads(plain)
    if isinstance(event, EventTracked) and event.properties:
        fields["properties"] = {**fields.get("properties", {}), **event.properties}
    fields["sealed"] = ""
    return _with(event, fields)


def _with(event: Sealable, fields: dict[str, Any]) -> Sealable:
    """A copy of the frozen event with `fields` replaced: `dataclasses.replace` without its
    checks, which cost five times the decryption itself on the projector's path."""
    copied = object.__new__(type(event))
    copied.__dict__.update(event.__dict__)
    copied.__dict__.update(fields)
    return copied


# A user's state handed over between partitions (AnonymousHandedOver): its personal part.
STATE_FIELDS = ("traits", "time_traits", "contact", "consents", "timezone", "location", "place")


def seal_state(
    state: dict[str, Any], key_id: uuid.UUID, key: bytes, aad: bytes
) -> tuple[dict[str, Any], str]:
    """(the state without its personal fields, those fields sealed); ("" if none)."""
    secret = {k: state[k] for k in STATE_FIELDS if state.get(k)}
    if not secret:
        return state, ""
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, orjson.dumps(secret), aad)
    rest = {k: v for k, v in state.items() if k not in secret}
    return rest, f"{key_id.hex}.{base64.b64encode(nonce + sealed).decode()}"


def open_state(state: dict[str, Any], sealed: str, key: bytes | None, aad: bytes) -> dict[str, Any]:
    """The state with its personal fields back (`key` None, destroyed: without them)."""
    if not sealed or key is None:
        return state
    blob = base64.b64decode(sealed.partition(".")[2])
    return {
        **state,
        **orjson.loads(AESGCM(key).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], aad)),
    }


def _number(value: object) -> bool:
    return isinstance(value, float | int) and not isinstance(value, bool)


class KeySource(Protocol):
    """Keys by id: the key, or None if it was destroyed (or never existed)."""

    def keys(self, key_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, bytes | None]: ...


def unseal_all(events: list[Any], source: KeySource) -> list[Any]:
    """Every sealed event of `events` unsealed (others as they are), one key lookup."""
    ids = [key_id_of(e) for e in events]
    wanted = {k for k in ids if k is not None}
    if not wanted:
        return events
    keys = source.keys(wanted)
    return [e if k is None else unseal(e, keys.get(k)) for e, k in zip(events, ids, strict=True)]


_SEALED_KEY = re.compile(rb'"sealed":"([0-9a-f]{32})\.')


def sealed_key_ids(states: Iterable[bytes]) -> set[uuid.UUID]:
    """The keys that sealed events stored as `states` (their JSON), without decoding them."""
    found: set[uuid.UUID] = set()
    for state in states:
        match = _SEALED_KEY.search(state)
        if match is not None:
            found.add(uuid.UUID(hex=match.group(1).decode()))
    return found
