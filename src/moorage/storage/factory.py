"""Drivers registered by name and chosen by configuration (warehouse's interface registry).

An unknown name fails at start-up with the list of known names; nothing ever falls back
to another driver. Driver modules are imported only when configured, so the S3 and Swift
client libraries are not loaded on the embedded default.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from moorage.net.tls import TrustStore
from moorage.storage.checked import CheckedDriver
from moorage.storage.driver import StorageDriver

__all__ = ["DRIVERS", "DriverClass", "build_driver", "driver_class"]

#: Distribution's section name → ``module:Class``.
DRIVERS: dict[str, str] = {
    "filesystem": "moorage.storage.drivers.filesystem:FilesystemDriver",
    "inmemory": "moorage.storage.drivers.memory:MemoryDriver",
    "s3": "moorage.storage.drivers.s3:S3Driver",
    "swift": "moorage.storage.drivers.swift:SwiftDriver",
}


class DriverClass(Protocol):
    """What a driver class offers the factory."""

    Settings: type[BaseModel]

    def from_config(self, settings: Any, data_dir: Path, trust: TrustStore) -> StorageDriver: ...


def driver_class(name: str) -> DriverClass:
    """The class registered under ``name``; ``KeyError`` with the known names otherwise."""
    try:
        target = DRIVERS[name]
    except KeyError:
        raise KeyError(f"unknown storage driver {name!r}; known drivers: {', '.join(sorted(DRIVERS))}") from None
    module_name, _, class_name = target.partition(":")
    cls: DriverClass = getattr(importlib.import_module(module_name), class_name)
    return cls


def build_driver(
    name: str, settings: BaseModel, data_dir: Path, *, redirect: bool, trust: TrustStore | None = None,
    metrics: bool = True,
) -> CheckedDriver:
    """Construct the configured driver inside its wrappers (checking outermost).

    ``trust`` is the deployment's outbound CA trust (``outbound.ca_bundle``); drivers that talk
    TLS add their own ``cabundle`` to it.
    """
    driver: StorageDriver = driver_class(name).from_config(settings, data_dir, trust or TrustStore())
    if metrics:  # innermost: it times the backend, not the wrappers
        from moorage.storage.middleware.metrics import InstrumentedDriver

        driver = InstrumentedDriver(driver)
    if not redirect:
        from moorage.storage.middleware.redirect import NoRedirect

        driver = NoRedirect(driver)
    return CheckedDriver(driver)
