"""The environment variables each service reads: the aliases of its settings classes.

Found by importing the service's package (`services.<name>`) and collecting every
pydantic-settings class its modules define or import, so a new setting is known without
editing a list here.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from functools import cache

from pydantic_settings import BaseSettings

from services.common.config import ServiceSettings

# A service whose package is not in this tree yet (written in parallel): what it is known to
# read until it arrives; once services/<name> exists its settings classes are used instead.
PENDING = {"console": frozenset({"CONSOLE_LISTEN"})}


def _aliases(settings: type[BaseSettings]) -> set[str]:
    out: set[str] = set()
    for name, field in settings.model_fields.items():
        alias = field.validation_alias or field.alias
        out.add(str(alias) if alias else name.upper())
    return out


def settings_classes(package: str) -> set[type[BaseSettings]]:
    """Every BaseSettings subclass that a module of `package` defines or imports."""
    root = importlib.import_module(package)
    modules = [root]
    if hasattr(root, "__path__"):
        for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
            modules.append(importlib.import_module(info.name))
    found: set[type[BaseSettings]] = set()
    for module in modules:
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseSettings)
                and value is not BaseSettings
            ):
                found.add(value)
    return found


@cache
def known_env(service: str) -> frozenset[str]:
    """Variables `python -m services.<service>` reads."""
    package = f"services.{service}"
    if importlib.util.find_spec(package) is None:
        return PENDING[service] | _aliases(ServiceSettings)
    names: set[str] = set()
    for settings in settings_classes(package):
        names |= _aliases(settings)
    return frozenset(names)


def setting_default(name: str) -> float:
    """The default of a shared setting (e.g. SHUTDOWN_GRACE_S) when a manifest leaves it out."""
    for field in ServiceSettings.model_fields.values():
        if field.alias == name:
            return float(field.default)
    raise KeyError(name)
