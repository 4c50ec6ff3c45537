"""The nexec controller: an HTTP gateway that turns requests into jobs on NATS.

The names below are imported when first used, so that importing a light module of
the package (``controller.keys.store``, which ``nexec keys`` uses) does not load
aiohttp and nats-py.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from controller.app import create_app
    from controller.config import ControllerConfig
    from controller.keys.store import ApiKey, KeyStore, create_key

__all__ = ["ApiKey", "ControllerConfig", "KeyStore", "create_app", "create_key"]

_HOMES = {
    "create_app": "controller.app",
    "ControllerConfig": "controller.config",
    "ApiKey": "controller.keys.store",
    "KeyStore": "controller.keys.store",
    "create_key": "controller.keys.store",
}


def __getattr__(name: str) -> Any:
    """Raises: AttributeError: not a name of the package."""
    if name not in _HOMES:
        raise AttributeError(f"module 'controller' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
