"""Stopping never hangs on a NATS server that stopped answering (frozen with SIGSTOP)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

from agentd.agent import AgentState
from controller.appkeys import NATS_LINK
from controller.natslink import LinkState
from tests.helpers import MakeAgent, MakeController, NatsServer

CONNECT_TIMEOUT_S = 0.25
"""Bounds each step of a stop that waits for the server."""
# Far above the second or so a stop bounded by CONNECT_TIMEOUT_S takes, far below
# the minute an unbounded nats-py drain takes against a frozen server.
STOP_BOUND_S = 30


@contextmanager
def frozen(server: NatsServer) -> Iterator[None]:
    """The server keeps its sockets open but answers nothing until the block ends."""
    pid = server.process.popen.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def test_agent_stops_while_nats_is_frozen(
    nats_server: NatsServer, make_agent: MakeAgent
) -> None:
    agent = await make_agent("a1", connect_timeout_s=CONNECT_TIMEOUT_S)
    with frozen(nats_server):
        await asyncio.wait_for(agent.stop(), STOP_BOUND_S)
    assert agent.state is AgentState.STOPPED


async def test_controller_stops_while_nats_is_frozen(
    nats_server: NatsServer, make_controller: MakeController
) -> None:
    controller = await make_controller(connect_timeout_s=CONNECT_TIMEOUT_S)
    with frozen(nats_server):
        await asyncio.wait_for(controller.close(), STOP_BOUND_S)
    assert controller.app[NATS_LINK].state is LinkState.CLOSED
