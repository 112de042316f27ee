"""Where campaigns may send: webhook URLs and sender addresses.

A webhook is a request the service makes on a tenant's behalf, from inside the
operator's network. So a URL is refused when its host is not a public address:
loopback, private, link-local (169.254.169.254 is the cloud metadata service, fe80::),
shared, multicast, reserved or unspecified, written in any form the resolver reads
(`127.1`, `0x7f000001`, `2130706433`, `[::ffff:127.0.0.1]`), or a name that only
means such an address (`localhost`, `metadata.google.internal`). The operator may
allow networks of their own (`allowed`, CAMPAIGN_WEBHOOK_ALLOWED_NETWORKS). Names are
resolved again when a webhook is sent (adapters/channels.py) and judged by
`address_allowed`, so a name that points at a refused address is refused then.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from email.utils import parseaddr
from urllib.parse import urlsplit

from services.campaign.domain.text import control_problem

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_URL_LENGTH = 2048
MAX_EMAIL_LENGTH = 254
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "metadata", "instance-data"})
_LOCAL_SUFFIXES = (".localhost", ".internal", ".local")
_INET_ATON = re.compile(r"(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}", re.IGNORECASE)


def parse_networks(text: str) -> tuple[Network, ...]:
    """`10.0.0.0/8, ::1/128` -> networks (ValueError names the bad one)."""
    out = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError as error:
            msg = f"not a network: {item!r} ({error})"
            raise ValueError(msg) from None
    return tuple(out)


def _number(part: str) -> int:
    if part[:2].lower() == "0x":
        return int(part, 16)
    return int(part, 8) if len(part) > 1 and part[0] == "0" else int(part)


def _inet_aton(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address the C resolver reads in `host` (`127.1`, `0x7f.1`, `017700000001`)."""
    if not _INET_ATON.fullmatch(host):
        return None
    try:
        parts = [_number(p) for p in host.split(".")]
    except ValueError:
        return None
    *head, last = parts
    if any(p > 255 for p in head) or last >= 256 ** (4 - len(head)):
        return None
    value = 0
    for p in head:
        value = value << 8 | p
    return ipaddress.IPv4Address(value << 8 * (4 - len(head)) | last)


def literal_address(host: str) -> Address | None:
    """The address written in a URL's host, if it is one."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return _inet_aton(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def address_allowed(address: Address, allowed: Sequence[Network] = ()) -> bool:
    """Public, or in a network the operator allows."""
    if any(address in network for network in allowed):
        return True
    return address.is_global and not address.is_multicast


def webhook_url_problem(url: str, allowed: Sequence[Network] = ()) -> str | None:
    """Why the service must not POST to `url`, or None."""
    if len(url) > MAX_URL_LENGTH:
        return f"at most {MAX_URL_LENGTH} characters"
    problem = control_problem(url)
    if problem or any(c.isspace() for c in url):
        return problem or "must not contain spaces"
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError:
        return "not a valid URL"
    if parts.scheme not in ("http", "https") or not host:
        return "must be an http or https URL"
    if parts.username is not None or parts.password is not None:
        return "must not carry a user name or password"
    address = literal_address(host)
    if address is None:
        if host in _LOCAL_NAMES or host.endswith(_LOCAL_SUFFIXES):
            return f"{host} is not a public host"
        return None
    if not address_allowed(address, allowed):
        return (
            f"{address} is not a public address (loopback, private, link-local or reserved);"
            " the operator can allow its network with CAMPAIGN_WEBHOOK_ALLOWED_NETWORKS"
        )
    return None


def email_from_problem(text: str) -> str | None:
    """Why `text` cannot be an email's sender, or None (empty: the service's default)."""
    if not text:
        return None
    if len(text) > MAX_EMAIL_LENGTH:
        return f"at most {MAX_EMAIL_LENGTH} characters"
    problem = control_problem(text)
    if problem:
        return problem
    _name, address = parseaddr(text)
    if "@" not in address or "," in text or address.count("@") != 1:
        return "one address, e.g. news@example.com or Shop <news@example.com>"
    return None
