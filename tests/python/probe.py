"""Ordering between two nats-py connections: a probe answers requests on a fresh inbox on
one connection, and `barrier` asks it from the other until it answers (see test_nats_py.py
for why a flush() is not enough)."""

import asyncio

import pytest
from nats.errors import NoRespondersError

# Longest a barrier waits for the probe.
WAIT = 5.0


async def start_probe(nc):
    """Answer requests on a fresh inbox on `nc`; start it after the test's subscriptions."""
    subject = nc.new_inbox()

    async def answer(msg):
        await nc.publish(msg.reply, b"")

    await nc.subscribe(subject, cb=answer)
    return subject


async def barrier(publisher, probe):
    """Request `probe` from `publisher` until it answers.

    The server handles a connection's commands in order, so once the probe (subscribed
    last) answers, every earlier subscription on its connection is visible to `publisher`.
    Until then the server answers no_responders at once: each retry is a round trip.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    for _ in range(100_000):
        left = deadline - loop.time()
        if left <= 0:
            break
        try:
            await publisher.request(probe, b"", timeout=left)
            return
        except NoRespondersError:
            continue
    pytest.fail(f"probe {probe} did not answer within {WAIT}s")
