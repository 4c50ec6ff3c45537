"""``nexec-controller``: the HTTP gateway's command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import aiohttp.log
from aiohttp import web

from controller.app import create_app
from controller.appkeys import KEYS_RELOADER, LIFECYCLE, REGISTRY
from controller.config import ControllerConfig
from controller.http.server import make_runner
from controller.keys.store import KeysFileError, KeyStore
from runtime.daemon import daemon_parser, start_daemon
from runtime.logs import log_summary
from runtime.settings import SettingsError
from runtime.signing import SigningKeyError
from schemas.limits import MAX_TIMEOUT_S

log = logging.getLogger("nexec.controller")

READY_MESSAGE = "nexec-controller listening on http://%s:%d"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = daemon_parser("nexec-controller", "The nexec HTTP gateway.", ControllerConfig)
    return parser.parse_args(argv)


async def serve(config: ControllerConfig, app: web.Application) -> None:
    """Serve HTTP until SIGTERM or SIGINT, then shut down cleanly; SIGHUP reloads the keys."""
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_requested.set)
    loop.add_signal_handler(signal.SIGHUP, app[KEYS_RELOADER].request_reload)
    access_log = aiohttp.log.access_logger if config.access_log else None
    runner = make_runner(app, access_log=access_log)
    await runner.setup()
    lifecycle = app[LIFECYCLE]
    try:
        site = web.TCPSite(runner, config.listen_host, config.listen_port)
        await site.start()
        host, port = runner.addresses[0][:2]
        log.info(READY_MESSAGE, host, port)
        await stop_requested.wait()
        log.info("nexec-controller draining: %d request(s) in flight", lifecycle.in_flight)
        drain_timeout_s = MAX_TIMEOUT_S + config.delivery_margin_s
        if not await lifecycle.drain(drain_timeout_s):
            log.warning("drain timeout: %d request(s) still in flight", lifecycle.in_flight)
    finally:
        await runner.cleanup()
        counts = {**lifecycle.counts(), "registry_entries_refused": app[REGISTRY].refused}
        log_summary(log, "nexec-controller stopped", counts)


def main(argv: list[str] | None = None) -> int:
    try:
        config = start_daemon(ControllerConfig, parse_args(argv))
        keys = KeyStore.load(config.keys_file)
        app = create_app(config, keys)
    except (SettingsError, KeysFileError, SigningKeyError, OSError) as exc:
        print(f"nexec-controller: {exc}", file=sys.stderr)
        return 2
    if not len(keys):
        log.warning("keys file %s has no keys: every request will get 401", config.keys_file)
    asyncio.run(serve(config, app))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
