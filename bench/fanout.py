"""Floor F3's responders: N plain subscribers over a few connections, each answering
every message on ``bench.fanout`` to its reply subject. Prints ``ready N``."""

from __future__ import annotations

import argparse
import asyncio
import signal

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

SUBJECT = "bench.fanout"


async def serve(nats_url: str, count: int, connections: int) -> None:
    clients: list[Client] = [await nats.connect(nats_url) for _ in range(connections)]

    def responder(client: Client, index: int):  # type: ignore[no-untyped-def]
        payload = f'{{"responder": {index}}}'.encode()

        async def answer(msg: Msg) -> None:
            await client.publish(msg.reply, payload)

        return answer

    for index in range(count):
        client = clients[index % connections]
        await client.subscribe(SUBJECT, cb=responder(client, index))
    for client in clients:
        await client.flush()
    print(f"ready {count}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    for client in clients:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout")
    parser.add_argument("nats_url")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(serve(args.nats_url, args.count, args.connections))


if __name__ == "__main__":
    main()
