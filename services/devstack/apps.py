"""The apps `make run` serves: app `demo` with its development key, plus any of yours.

App `demo` always has the key kept in `var/dev-api-key` (created once), so `cohortflow`
needs no options. More apps come from the documented key settings, read as every service
reads them: `COHORTFLOW_API_KEYS=shop:key1,blog:key2` and/or `COHORTFLOW_API_KEYS_FILE`.
The children get `COHORTFLOW_API_KEYS` with the demo pair first, then yours, and the file
setting unchanged.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.common.config import ApiKeySettings

DEV_APP_ID = "demo"
DEV_KEY_FILE = "dev-api-key"


def dev_api_key(var: Path) -> str:
    """The development key of app "demo", created once and kept in var/dev-api-key."""
    path = var / DEV_KEY_FILE
    if path.exists():
        return path.read_text().strip()
    key = "cf_dev_" + secrets.token_urlsafe(24)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


@dataclass(frozen=True)
class DevApps:
    """The development key and every app the services will accept a key of."""

    dev_key: str
    apps: tuple[str, ...]
    # COHORTFLOW_API_KEYS as the children get it
    keys_setting: str
    # where the apps other than demo's development key come from, e.g. "COHORTFLOW_API_KEYS"
    sources: tuple[str, ...]


def dev_apps(var: Path, environ: Mapping[str, str]) -> DevApps:
    """App demo's key plus the user's keys; ValueError naming a malformed setting."""
    given = environ.get("COHORTFLOW_API_KEYS", "").strip()
    keys_file = environ.get("COHORTFLOW_API_KEYS_FILE", "").strip()
    settings = ApiKeySettings(api_keys=given, api_keys_file=Path(keys_file) if keys_file else None)
    try:
        pairs = settings.pairs()
    except OSError as problem:
        msg = f"COHORTFLOW_API_KEYS_FILE={keys_file}: {problem.strerror}"
        raise ValueError(msg) from None
    key = dev_api_key(var)
    apps = dict.fromkeys([DEV_APP_ID, *(app for app, _ in pairs)])
    sources = tuple(
        name
        for name, value in (("COHORTFLOW_API_KEYS", given), ("COHORTFLOW_API_KEYS_FILE", keys_file))
        if value
    )
    setting = ",".join(filter(None, [f"{DEV_APP_ID}:{key}", given]))
    return DevApps(key, tuple(apps), setting, sources)
