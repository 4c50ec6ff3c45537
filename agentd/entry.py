"""The ``nexec-agentd`` entry point: keeps aiohttp out of the agent process.

nats-py imports aiohttp when it is installed, only for NATS over WebSocket,
which the agent never uses; aiohttp costs about 20 MB of resident memory on
every managed host. Marking it unavailable before anything imports nats-py
makes nats-py skip it. Only this entry point does so; importing ``agentd``
elsewhere changes nothing.
"""

from __future__ import annotations

import importlib
import sys


def main() -> int:
    sys.modules.setdefault("aiohttp", None)  # type: ignore[arg-type]
    agent_main = importlib.import_module("agentd.main")
    return int(agent_main.main())
