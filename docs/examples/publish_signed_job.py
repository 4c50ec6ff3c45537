"""Publish one signed job on NATS directly and print the host's result.

    python docs/examples/publish_signed_job.py NATS_URL SEED_FILE HOSTNAME COMMAND [ARG ...]

Needs only nats-py and nkeys. SEED_FILE holds the publisher's nkey seed
(``nexec signing-key create --out publisher.nk``); the agent must list its
public key in ``trusted_signers``. See docs/security.md, "Signed jobs".
"""

import asyncio
import base64
import json
import string
import sys
import time
import uuid
from pathlib import Path

import nats
import nkeys

SAFE = set(string.ascii_letters + string.digits + "-")


def host_subject(hostname: str) -> str:
    """docs/subjects.md: every byte outside A-Za-z0-9- becomes _XX."""
    token = "".join(c if c in SAFE else "".join(f"_{b:02X}" for b in c.encode()) for c in hostname)
    return f"nexec.exec.host.{token}"


async def publish(nats_url: str, key: nkeys.KeyPair, hostname: str, *argv: str) -> None:
    command, *args = argv
    now = time.time()
    job = {
        "type": "nexec.exec.v1.job",
        "job_id": str(uuid.uuid4()),
        "command": command,
        "args": args,
        "timeout_s": 10,
        "created_at": now,  # an agent refuses a signed job older than itself
        "deadline": now + 10 + 3,
        "target": hostname,
        "caller": "example-publisher",
    }
    payload = json.dumps(job).encode()  # sign exactly the bytes you publish
    headers = {
        "Nexec-Signer": key.public_key.decode(),
        "Nexec-Signature": base64.b64encode(key.sign(payload)).decode(),
    }
    nc = await nats.connect(nats_url)
    inbox = nc.new_inbox()
    replies = await nc.subscribe(inbox)
    await nc.publish(host_subject(hostname), payload, reply=inbox, headers=headers)
    while True:  # an ack first (unless refused), then the result
        reply = json.loads((await replies.next_msg(timeout=20)).data)
        if reply["type"] == "nexec.exec.v1.result":
            print(json.dumps(reply, indent=2))
            break
    await nc.close()


if __name__ == "__main__":
    nats_url, seed_file, hostname, *command = sys.argv[1:]
    signing_key = nkeys.from_seed(bytearray(Path(seed_file).read_bytes().strip()))
    asyncio.run(publish(nats_url, signing_key, hostname, *command))
