"""``nexec-controller``: the HTTP gateway's command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

import aiohttp.log
from aiohttp import web

from controller.app import create_app
from controller.appkeys import KEYS_RELOADER, LIFECYCLE, REGISTRY
from controller.config import ControllerConfig
from controller.httpserver import make_runner
from controller.keys import KeysFileError, KeyStore
from schemas.api import MAX_TIMEOUT_S
from schemas.settings import SettingsError, add_nats_client_flags, given_flags, load_settings
from schemas.signing import SigningKeyError

log = logging.getLogger("nexec.controller")

READY_MESSAGE = "nexec-controller listening on http://%s:%d"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="nexec-controller",
        description="The nexec HTTP gateway. Every flag is also NEXEC_<FIELD> in the "
        "environment and <field> in the TOML config file.",
    )
    parser.add_argument("--config", type=Path, help="TOML config file")
    parser.add_argument("--nats-url", dest="nats_url")
    parser.add_argument("--listen", help="HOST:PORT (default 127.0.0.1:8080; port 0 = any)")
    parser.add_argument("--keys-file", dest="keys_file", type=Path)
    parser.add_argument(
        "--keys-reload-interval",
        dest="keys_reload_interval_s",
        type=float,
        metavar="SECONDS",
        help="check the keys file for changes this often (SIGHUP reloads it at once)",
    )
    parser.add_argument("--subject-prefix", dest="subject_prefix")
    parser.add_argument(
        "--delivery-margin", dest="delivery_margin_s", type=float, metavar="SECONDS"
    )
    parser.add_argument(
        "--delivery-timeout", dest="delivery_timeout_s", type=float, metavar="SECONDS"
    )
    parser.add_argument(
        "--agent-lost-after",
        dest="agent_lost_after_s",
        type=float,
        metavar="SECONDS",
        help="give up on a host not heard of this long mid-job (default 6)",
    )
    parser.add_argument("--job-retention", dest="job_retention_s", type=float, metavar="SECONDS")
    parser.add_argument("--jetstream-replicas", dest="jetstream_replicas", type=int)
    parser.add_argument(
        "--state-check-interval",
        dest="state_check_interval_s",
        type=float,
        metavar="SECONDS",
        help="check every stream and bucket this often; make a missing one again",
    )
    parser.add_argument("--max-body-bytes", dest="max_body_bytes", type=int)
    parser.add_argument(
        "--job-signing-key-file",
        dest="job_signing_key_file",
        type=Path,
        metavar="FILE",
        help="nkey seed file: sign every job (nexec signing-key create)",
    )
    parser.add_argument(
        "--rate-limit",
        dest="rate_limit_per_s",
        type=float,
        metavar="PER_SECOND",
        help="requests per second per key on this controller (0 = no limit)",
    )
    parser.add_argument(
        "--http-read-timeout",
        dest="http_read_timeout_s",
        type=float,
        metavar="SECONDS",
        help="time a client has for a request's headers, and for its body (default 30)",
    )
    parser.add_argument(
        "--http-max-connections",
        dest="http_max_connections",
        type=int,
        help="connections served at once; more get 503 (default 1000)",
    )
    parser.add_argument(
        "--access-log",
        dest="access_log",
        action="store_const",
        const=True,
        help="log one line per HTTP request",
    )
    parser.add_argument("--log-level", default="INFO")
    add_nats_client_flags(parser)
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
        log.info(
            "nexec-controller stopped: %s registry_entries_refused=%d",
            lifecycle.summary(),
            app[REGISTRY].refused,
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = load_settings(
            ControllerConfig,
            config_file=args.config,
            environ=os.environ,
            flags=given_flags(args, exclude={"config", "log_level"}),
        )
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
