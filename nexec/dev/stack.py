"""``nexec dev``: nats-server, a controller and one local agent on this machine.

Everything listens on 127.0.0.1, keeps its data in a temporary directory that
is removed at exit, and stops in order (agent, controller, nats-server) on
Ctrl-C, SIGTERM or SIGHUP, or when any of the three dies. When ``nexec dev``
is killed instead (SIGKILL), the kernel kills the three (:mod:`nexec.dev.pdeathsig`)
and the next ``nexec dev`` removes the directory (:mod:`nexec.dev.workdir`).
"""

from __future__ import annotations

import re
import signal
import socket
import sys
import threading
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from controller.keys.store import PERMISSIONS, create_key
from nexec.dev.processes import ManagedProcess, start_nats_server
from nexec.dev.workdir import dev_work_dir, remove_stale_work_dirs
from runtime.signing import write_seed_file
from schemas.targets import TargetSyntaxError, validate_hostname

CONTROLLER_READY_RE = re.compile(
    r"nexec-controller listening on http://(?P<host>\S+):(?P<port>\d+)"
)
AGENT_READY_RE = re.compile(r"nexec-agentd ready")
STARTUP_TIMEOUT_S = 30.0
DEV_LABEL = "env:dev"
FALLBACK_HOSTNAME = "dev-agent"
DEV_AGENT_DRAIN_S = 3.0


@dataclass(frozen=True, slots=True)
class DevStack:
    url: str
    nats_url: str
    hostname: str
    api_key: str


def local_hostname() -> str:
    """This machine's hostname if it is a valid agent name, else ``dev-agent``."""
    try:
        return validate_hostname(socket.gethostname())
    except TargetSyntaxError:
        return FALLBACK_HOSTNAME


def banner(stack: DevStack) -> str:
    """What ``nexec dev`` prints once everything is up."""
    exec_url = f"{stack.url}/node/{stack.hostname}/command/exec"
    return f"""
nexec dev is running.
  API       {stack.url}   (OpenAPI: {stack.url}/openapi.json)
  console   {stack.url}/ui/   (sign in with the API key below)
  metrics   {stack.url}/metrics
  NATS      {stack.nats_url}
  agent     {stack.hostname}   (label {DEV_LABEL})
  API key   {stack.api_key}   (every permission; gone when nexec dev stops)

Run a command on the agent with the nexec command:
  export NEXEC_URL={stack.url} NEXEC_API_KEY={stack.api_key}
  nexec exec {stack.hostname} -- uname -a

or with curl:
  curl -s -X POST {exec_url} \\
    -H 'Authorization: Bearer {stack.api_key}' \\
    -H 'Content-Type: application/json' \\
    -d '{{"command": "uname", "args": ["-a"]}}'

Ctrl-C stops everything.
"""


def run_dev(port: int, *, out: TextIO = sys.stdout, log: TextIO = sys.stderr) -> int:
    """Start the stack, print :func:`banner`, run until a signal or a child's death.

    Returns 0 after a requested stop, 1 when a child died or could not start.
    Must run on the main thread: its children die with it (:mod:`nexec.dev.pdeathsig`).

    Raises:
        ProcessFailed: a child exited or was not ready in time.
        OSError: a program or the temporary directory failed.
    """
    stop_requested = _catch_stop_signals()
    for stale in remove_stale_work_dirs():
        print(f"nexec dev: removed {str(stale)!r}, left by a killed nexec dev", file=log)
    with dev_work_dir() as work_dir, ExitStack() as children:
        api_key = create_key(
            work_dir / "keys.json", name="dev", permissions=sorted(PERMISSIONS), targets=[]
        )
        signing_key_file = work_dir / "controller.nk"
        signer = write_seed_file(signing_key_file)
        nats, nats_url = start_nats_server(work_dir / "nats", echo=log, die_with_parent=True)
        children.callback(nats.stop)
        controller = _start_controller(
            nats_url, port, work_dir / "keys.json", signing_key_file, log
        )
        children.callback(controller.stop)
        ready = controller.wait_for_line(CONTROLLER_READY_RE, STARTUP_TIMEOUT_S)
        hostname = local_hostname()
        agent = _start_agent(nats_url, hostname, signer.public_key, work_dir, log)
        # Time to drain, kill what is left (SIGTERM, grace, SIGKILL) and report.
        children.callback(agent.stop, DEV_AGENT_DRAIN_S + 10)
        agent.wait_for_line(AGENT_READY_RE, STARTUP_TIMEOUT_S)
        controller.wait_for_line(
            re.compile(rf"agent joined: {re.escape(hostname)}$"), STARTUP_TIMEOUT_S
        )
        stack = DevStack(
            url=f"http://{ready['host']}:{ready['port']}",
            nats_url=nats_url,
            hostname=hostname,
            api_key=api_key,
        )
        print(banner(stack), file=out, flush=True)
        return _supervise(stop_requested, [nats, controller, agent], log)


def _catch_stop_signals() -> threading.Event:
    """An event set by Ctrl-C, SIGTERM or SIGHUP."""
    stop_requested = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop_requested.set())
    return stop_requested


def _start_controller(
    nats_url: str, port: int, keys_file: Path, signing_key_file: Path, log: TextIO
) -> ManagedProcess:
    argv = [
        sys.executable, "-m", "controller",
        "--nats-url", nats_url,
        "--listen", f"127.0.0.1:{port}",
        "--keys-file", str(keys_file),
        "--job-signing-key-file", str(signing_key_file),
        "--access-log",
    ]  # fmt: skip
    return ManagedProcess(argv, name="controller", echo=log, die_with_parent=True)


def _start_agent(
    nats_url: str, hostname: str, signer: str, work_dir: Path, log: TextIO
) -> ManagedProcess:
    argv = [
        sys.executable, "-m", "agentd",
        "--nats-url", nats_url,
        "--hostname", hostname,
        "--label", DEV_LABEL,
        "--trusted-signer", signer,
        "--allow-shell",
        "--drain-timeout", str(DEV_AGENT_DRAIN_S),
        "--state-dir", str(work_dir / "agent-state"),
    ]  # fmt: skip
    return ManagedProcess(argv, name="agent", echo=log, die_with_parent=True)


def _supervise(
    stop_requested: threading.Event, processes: list[ManagedProcess], log: TextIO
) -> int:
    """Block until a stop is requested (0) or a child exits on its own (1)."""
    while not stop_requested.wait(timeout=1.0):
        for process in processes:
            if process.popen.poll() is not None:
                print(
                    f"nexec dev: {process.name} exited ({process.popen.returncode}); stopping",
                    file=log,
                )
                return 1
    print("nexec dev: stopping", file=log, flush=True)
    return 0
