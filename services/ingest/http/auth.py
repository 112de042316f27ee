"""Write keys: HTTP Basic auth with the key as the user name, as Segment's clients send it.

The keys are ingest's API keys (COHORTFLOW_API_KEYS / _FILE), each bound to one app; the
password is not read (Segment's clients leave it empty). A `writeKey` inside the body is
no authentication here: a request is refused before its body is read unless the header
names a known key.
"""

from __future__ import annotations

import base64
import binascii

from services.common.grpc.auth import ApiKeys
from services.ingest.http.refusal import Refusal

_HOW = "send Authorization: Basic base64(<write key>:)"
_CHALLENGE = {"WWW-Authenticate": 'Basic realm="cohortflow"'}


def _refused(why: str) -> Refusal:
    return Refusal(401, "auth", f"{why}; {_HOW}", [("Authorization", why)], headers=_CHALLENGE)


def app_of(authorization: str | None, keys: ApiKeys) -> str:
    """The app the request's write key belongs to; 401 without a known one."""
    if not authorization:
        raise _refused("is missing")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        raise _refused(f"uses {scheme[:20]!r}, not Basic")
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _refused("is not base64 of '<write key>:'") from None
    key = decoded.partition(":")[0]
    if not key:
        raise _refused("names no write key")
    app_id = keys.app_for(key)
    if app_id is None:
        raise _refused("names an unknown write key")
    return app_id
