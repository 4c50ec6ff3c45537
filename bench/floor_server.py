"""Floor F2's server: an aiohttp handler doing one nats-py request to a responder
that answers at once. ``python -m bench.floor_server NATS_URL`` prints ``ready PORT``."""

from __future__ import annotations

import asyncio
import signal
import sys

import nats
from aiohttp import web
from nats.aio.msg import Msg

SUBJECT = "bench.floor.echo"


async def serve(nats_url: str) -> None:
    responder = await nats.connect(nats_url)
    requester = await nats.connect(nats_url)

    async def answer(msg: Msg) -> None:
        await msg.respond(b'{"ok": true}')

    await responder.subscribe(SUBJECT, cb=answer)
    await responder.flush()

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        reply = await requester.request(SUBJECT, b"{}", timeout=5)
        return web.Response(body=reply.data, status=202, content_type="application/json")

    app = web.Application()
    app.router.add_post("/echo", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(f"ready {runner.addresses[0][1]}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()
    await requester.close()
    await responder.close()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1]))
