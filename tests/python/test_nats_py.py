"""nats-py (the official Python client) against the broker: pub/sub with and without
headers, a queue group, request/reply with headers, and no_responders.

Each test gets its own broker from the `server_url` fixture (conftest.py). The tests are
plain synchronous pytest functions that run their coroutine with `asyncio.run`, so only
nats-py and pytest are needed. Every wait is bounded.

One connection's subscriptions are ordered before another connection's publishes by a probe
round trip (`barrier`), not by `flush()`: nats-py writes flush's PING straight to the socket,
ahead of SUBs still queued for its flusher task, so its PONG can come back before the server
has seen the SUB (seen against the reference, about one run in thirty).
"""

import asyncio

import nats
import pytest
from nats.errors import NoRespondersError

from probe import barrier, start_probe

# Upper bound on one wait for a message, and on a whole test.
WAIT = 5.0
TEST_TIMEOUT = 30.0


def run(coro):
    """Run one test coroutine, failing it if it takes longer than TEST_TIMEOUT."""
    return asyncio.run(asyncio.wait_for(coro, TEST_TIMEOUT))


async def connect(url):
    # No reconnects: a broker that goes away must fail the test, not stall it.
    return await nats.connect(url, allow_reconnect=False, connect_timeout=WAIT)


def test_pub_sub(server_url):
    async def main():
        sub_nc = await connect(server_url)
        pub_nc = await connect(server_url)
        sub = await sub_nc.subscribe("greet.*")
        await barrier(pub_nc, await start_probe(sub_nc))

        # Not matching "greet.*": must be skipped, and it goes first, so the next message
        # proves it was not delivered.
        await pub_nc.publish("greet.joe.extra", b"nope")
        await pub_nc.publish("greet.joe", b"hello")
        await pub_nc.publish("greet.ann", b"hi", headers={"X-Lang": "en"})
        await pub_nc.flush()

        m = await sub.next_msg(timeout=WAIT)
        assert (m.subject, m.data, m.headers) == ("greet.joe", b"hello", None)
        m = await sub.next_msg(timeout=WAIT)
        assert (m.subject, m.data) == ("greet.ann", b"hi")
        assert m.headers is not None and m.headers.get("X-Lang") == "en", m.headers
        await sub_nc.close()
        await pub_nc.close()

    run(main())


def test_queue_group_delivers_each_message_once(server_url):
    n, members = 300, 3

    async def main():
        received = [[] for _ in range(members)]
        all_in = asyncio.Event()

        def member(k):
            async def cb(msg):
                received[k].append(int(msg.data))
                if sum(map(len, received)) >= n:
                    all_in.set()
            return cb

        conns = []
        for k in range(members):
            nc = await connect(server_url)
            await nc.subscribe("jobs", queue="workers", cb=member(k))
            conns.append(nc)
        pub_nc = await connect(server_url)
        probes = [await start_probe(nc) for nc in conns]
        for probe in probes:
            await barrier(pub_nc, probe)
        for i in range(n):
            await pub_nc.publish("jobs", str(i).encode())
        await pub_nc.flush()

        try:
            await asyncio.wait_for(all_in.wait(), WAIT)
        except asyncio.TimeoutError:
            pytest.fail(f"only {sum(map(len, received))} of {n} messages arrived")
        # A publisher round trip through every member: a late duplicate would show up now.
        for probe in probes:
            await barrier(pub_nc, probe)
        got = sorted(i for r in received for i in r)
        assert got == list(range(n)), "lost or duplicated messages"
        # The reference picks members at random: 300 over 3 leaves none idle.
        assert all(received), [len(r) for r in received]
        for nc in conns + [pub_nc]:
            await nc.close()

    run(main())


def test_request_reply_with_headers(server_url):
    async def main():
        responder = await connect(server_url)
        requester = await connect(server_url)

        async def echo(msg):
            headers = {
                "X-Trace-Id": (msg.headers or {}).get("X-Trace-Id", "missing"),
                "X-Responder": "py",
            }
            await responder.publish(msg.reply, msg.data.upper(), headers=headers)

        await responder.subscribe("svc.echo", cb=echo)
        await barrier(requester, await start_probe(responder))

        for i in range(5):
            resp = await requester.request(
                "svc.echo", f"ping {i}".encode(), timeout=WAIT, headers={"X-Trace-Id": f"trace-{i}"}
            )
            assert resp.data == f"PING {i}".encode()
            assert resp.headers is not None, "response headers lost"
            assert resp.headers.get("X-Trace-Id") == f"trace-{i}"
            assert resp.headers.get("X-Responder") == "py"
        await responder.close()
        await requester.close()

    run(main())


def test_request_without_responders_fails_fast(server_url):
    async def main():
        nc = await connect(server_url)
        loop = asyncio.get_running_loop()
        started = loop.time()
        # A 10 s request timeout: the 503 must come back long before it.
        with pytest.raises(NoRespondersError):
            await nc.request("nobody.home", b"anyone?", timeout=10)
        assert loop.time() - started < WAIT
        await nc.close()

    run(main())
