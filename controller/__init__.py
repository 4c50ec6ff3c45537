"""The nexec controller: an HTTP gateway that turns requests into jobs on NATS."""

from controller.app import create_app
from controller.config import ControllerConfig
from controller.keys.store import ApiKey, KeyStore, create_key

__all__ = ["ApiKey", "ControllerConfig", "KeyStore", "create_app", "create_key"]
