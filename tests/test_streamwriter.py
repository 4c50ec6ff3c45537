"""StreamWriter: acknowledged JetStream writes, against a real nats-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import nats.errors
import nats.js.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import StreamConfig

from runtime.streamwriter import StreamWriter

STREAM = StreamConfig(name="WRITES", subjects=["writes.>"])


@pytest.fixture
async def writer(nc: Client) -> AsyncIterator[StreamWriter]:
    await nc.jetstream().add_stream(STREAM)
    stream_writer = StreamWriter(nc, timeout_s=5)
    await stream_writer.open()
    yield stream_writer
    await stream_writer.close()


async def test_a_write_returns_once_the_stream_stored_it(nc: Client, writer: StreamWriter) -> None:
    first = await writer.write("writes.a", b"one")
    second = await writer.write("writes.b", b"two", headers={"X-Test": "yes"})

    assert (first.stream, first.seq, second.seq) == ("WRITES", 1, 2)
    stored = await nc.jetstream().get_msg("WRITES", seq=2)
    assert (stored.subject, stored.data) == ("writes.b", b"two")
    assert stored.headers is not None and stored.headers["X-Test"] == "yes"
    assert writer.in_flight == 0


async def test_many_writes_in_flight_are_each_acknowledged(writer: StreamWriter) -> None:
    acks = [await writer.send(f"writes.{n}", b"x") for n in range(200)]

    assert sorted([(await ack).seq for ack in acks]) == list(range(1, 201))
    assert writer.in_flight == 0


async def test_a_refused_write_raises_the_streams_error(writer: StreamWriter) -> None:
    await writer.write("writes.once", b"first")

    with pytest.raises(nats.js.errors.APIError) as refused:
        await writer.write(
            "writes.once", b"second", headers={"Nats-Expected-Last-Subject-Sequence": "0"}
        )
    assert refused.value.err_code == 10071  # wrong last sequence


async def test_a_subject_no_stream_captures_raises_no_stream(writer: StreamWriter) -> None:
    with pytest.raises(nats.js.errors.NoStreamResponseError):
        await writer.write("elsewhere.a", b"lost")


async def test_a_write_nobody_acknowledges_times_out(nc: Client, writer: StreamWriter) -> None:
    async def ignore(msg: Msg) -> None:
        pass

    await nc.subscribe("silent.a", cb=ignore)  # interest, so no "no responders"; no ack ever

    with pytest.raises(nats.errors.TimeoutError):
        await writer.write("silent.a", b"x", timeout_s=0.2)
    assert (await writer.write("writes.after", b"y")).seq == 1  # the writer still works
    assert writer.in_flight == 0


async def silence(nc: Client) -> None:
    """Interest on ``silent.>`` so a write there gets no "no responders", and no ack ever."""

    async def ignore(msg: Msg) -> None:
        pass

    await nc.subscribe("silent.>", cb=ignore)


async def test_a_shorter_timeout_is_not_held_up_by_a_longer_one(
    nc: Client, writer: StreamWriter
) -> None:
    await silence(nc)
    patient = await writer.send("silent.a", b"x", timeout_s=30)
    hasty = await writer.send("silent.b", b"x", timeout_s=0.2)

    with pytest.raises(nats.errors.TimeoutError):
        await asyncio.wait_for(hasty, 20)
    assert not patient.done()  # its own deadline is far off
    patient.cancel()


async def test_each_write_times_out_after_the_one_before(nc: Client, writer: StreamWriter) -> None:
    await silence(nc)
    acks = [await writer.send(f"silent.{n}", b"x", timeout_s=t) for n, t in enumerate((0.3, 0.1))]

    # The timer comes back for the next deadline: none waits forever.
    done, _ = await asyncio.wait(acks, timeout=20)
    assert len(done) == 2
    assert all(isinstance(ack.exception(), nats.errors.TimeoutError) for ack in acks)
    assert writer.in_flight == 0


async def test_writes_in_flight_at_close_time_out(nc: Client, writer: StreamWriter) -> None:
    await silence(nc)
    acknowledged = await writer.send("silent.a", b"x", timeout_s=0.2)
    await writer.close()

    with pytest.raises(nats.errors.TimeoutError):
        await asyncio.wait_for(acknowledged, 20)
    with pytest.raises(nats.errors.Error, match="before open"):
        await writer.write("writes.a", b"x")


async def test_writing_before_open_raises(nc: Client) -> None:
    with pytest.raises(nats.errors.Error, match="before open"):
        await StreamWriter(nc, timeout_s=1).write("writes.a", b"x")


async def test_failures_are_counted_by_the_stream_of_their_subject(nc: Client) -> None:
    await nc.jetstream().add_stream(STREAM)
    await silence(nc)
    writer = StreamWriter(nc, timeout_s=5, stream_of=lambda subject: subject.split(".")[0])
    await writer.open()
    refused = {"Nats-Expected-Last-Sequence": "7"}

    await writer.write("writes.a", b"stored")
    with pytest.raises(nats.js.errors.APIError):
        await writer.write("writes.b", b"refused", headers=refused)
    with pytest.raises(nats.js.errors.NoStreamResponseError):
        await writer.write("elsewhere.a", b"no stream")
    with pytest.raises(nats.errors.TimeoutError):
        await writer.write("silent.a", b"no ack", timeout_s=0.2)
    await writer.close()

    assert writer.failures == {"writes": 1, "elsewhere": 1, "silent": 1}
