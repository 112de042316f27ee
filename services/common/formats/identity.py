"""Ids, identity links and contact addresses shared by the format mappings.

- A source event that carries a user id and an anonymous (device) id at once is how these
  tools join a device's anonymous history to the user: it implies a link, an Identify
  with both ids whose event id is derived from the pair (`link-<hash>`), so sending it
  again, from this line or any other, is DUPLICATE.
- A source object without an id of its own gets one derived from its content, so
  importing the same file again stays idempotent.
- Traits named `email` / `$email` and `phone` / `$phone` become the profile's contact
  addresses when they have the shape ingest accepts (a phone in E.164 once spaces,
  dashes, dots and brackets are dropped); otherwise they stay traits.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson
from cohortflow.ingest.v1 import ingest_pb2
from google.protobuf import timestamp_pb2

from services.common.formats.fields import FieldError
from services.common.formats.values import Values

LINK_PREFIX = "link-"
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PHONE = re.compile(r"\+[1-9][0-9]{6,14}")
_PHONE_NOISE = re.compile(r"[\s\-.()]")
_MAX_EMAIL = 254


def digest(*parts: Any) -> str:
    """32 hex digits of a hash of `parts` (JSON values, keys sorted)."""
    try:
        data = orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        raise FieldError("", "nests too deep to derive an event id from") from None
    return hashlib.sha256(data).hexdigest()[:32]


def derived_id(prefix: str, source: dict[str, Any]) -> str:
    """An event id from the whole source object, for objects that carry none."""
    return prefix + digest(source)


def link(
    user_id: str, anonymous_id: str, event_time: timestamp_pb2.Timestamp | None
) -> ingest_pb2.IdentifyRequest | None:
    """The Identify joining `anonymous_id` to `user_id`, or None unless both are given."""
    if not user_id or not anonymous_id or user_id == anonymous_id:
        return None
    request = ingest_pb2.IdentifyRequest(
        event_id=LINK_PREFIX + digest(anonymous_id, user_id),
        user_id=user_id,
        anonymous_id=anonymous_id,
    )
    if event_time is not None:
        request.event_time.CopyFrom(event_time)
    return request


def contact_from(traits: Values) -> ingest_pb2.Contact:
    """The email and phone traits that are addresses, moved out of `traits` into a Contact."""
    contact = ingest_pb2.Contact()
    for key in ("email", "$email"):
        value = traits.get(key)
        if value is not None and value.HasField("string_value"):
            email = value.string_value.strip()
            if len(email) <= _MAX_EMAIL and _EMAIL.fullmatch(email) and not contact.email:
                contact.email = email
                del traits[key]
    for key in ("phone", "$phone"):
        value = traits.get(key)
        if value is not None and value.HasField("string_value"):
            phone = _PHONE_NOISE.sub("", value.string_value)
            if _PHONE.fullmatch(phone) and not contact.phone:
                contact.phone = phone
                del traits[key]
    return contact
