"""nats-py across account imports, the same way against natsu and against the reference
nats-server (`NATSU_TEST_TARGET=reference`), with the same config.

Account A exports a stream `events.>` and a service `svc.echo`; account B imports the stream
under the prefix `fromA` and the service as `echo`. A's user logs in with a password, B's
with an NKey made by the test (nats-py's `nkeys_seed_str`, which needs the `nkeys` package).

- request/reply: B's `request("echo")` reaches A's responder on `svc.echo` with a `_R_.`
  reply subject and a `Nats-Request-Info` header naming account B; A's answer is B's reply;
  A's own `echo` hears nothing of it.
- pub/sub: A's `events.x` reaches B's subscriber as `fromA.events.x` and not B's own
  `events.>`; nothing B publishes reaches a subscriber in A (after B's publishes and a
  flush, the next thing A's subscribers get is A's own marker).

Each round opens fresh connections; natsu runs on all cores (two here), so A and B land on
the same core or on different ones. Ordering comes from flushes (see `synced`), not sleeps.
"""

import asyncio
import json

import pytest

from test_accounts_auth import new_user_seed
from test_auth_tls import WAIT, connect, run

pytest.importorskip("nkeys", reason="nats-py's NKey login needs the nkeys package (pip install nkeys)")

ROUNDS = 4


def accounts_conf(b_public):
    return f"""
    accounts {{
      A {{
        users: [{{user: a, password: a-pw}}]
        exports: [
          {{stream: "events.>"}}
          {{service: "svc.echo"}}
        ]
      }}
      B {{
        users: [{{nkey: {b_public}}}]
        imports: [
          {{stream: {{account: A, subject: "events.>"}}, prefix: "fromA"}}
          {{service: {{account: A, subject: "svc.echo"}}, to: "echo"}}
        ]
      }}
    }}
    """


@pytest.fixture
def accounts(start_broker):
    """Start the broker with the two accounts; return a coroutine function giving fresh
    (A, B, spares) connections for a round: in odd rounds a spare connection between A's and
    B's moves B to the other core (natsu's cores take new connections in turn)."""
    seed, public = new_user_seed()
    port = start_broker(conf=accounts_conf(public))

    async def clients(round_):
        a = await connect(port, user="a", password="a-pw")
        spares = [await connect(port, user="a", password="a-pw") for _ in range(round_ % 2)]
        return a, await connect(port, nkeys_seed_str=seed), spares

    return clients


def seen(msg):
    return msg.subject, msg.data


async def synced(*conns):
    """Each connection's commands so far are in the server: nats-py writes a flush's PING
    straight to the socket, ahead of what it still buffers (a SUB just made), so the PONG
    of the first flush may come before the server has the SUB; the second PING follows it."""
    for nc in conns:
        await nc.flush(timeout=WAIT)
        await nc.flush(timeout=WAIT)


async def b_reaches_nobody_in_a(a, b, b_publishes, a_subs):
    """B publishes `b_publishes` (subject, payload); then A publishes a marker on each of
    `a_subs` (subject: subscription of A's), and each subscription's next message must be
    A's marker: nothing of B's came before it."""
    for subject, payload in b_publishes:
        await b.publish(subject, payload)
    await synced(b)
    for subject in a_subs:
        await a.publish(subject, b"marker")
    await synced(a)
    for subject, sub in a_subs.items():
        assert seen(await sub.next_msg(timeout=WAIT)) == (subject, b"marker"), f"A's {sub.subject} after B's publishes"


async def close(*conns):
    for nc in conns:
        await nc.close()


def test_request_reply_across_the_service_import(accounts):
    async def main():
        for round_ in range(ROUNDS):
            a, b, spares = await accounts(round_)
            service = await a.subscribe("svc.echo")
            a_echo = await a.subscribe("echo")  # B's name for the service is no subject of A's
            await synced(a)
            ask = f"ping {round_}".encode()

            async def respond():
                m = await service.next_msg(timeout=WAIT)
                await a.publish(m.reply, b"pong to " + m.data)
                await synced(a)
                return m

            req, answer = await asyncio.gather(respond(), b.request("echo", ask, timeout=WAIT))
            assert answer.data == b"pong to " + ask, round_
            assert seen(req) == ("svc.echo", ask), round_
            assert req.reply.startswith("_R_."), f"the responder sees a generated reply subject, not B's inbox: {req.reply}"
            info = (req.headers or {}).get("Nats-Request-Info")
            assert info is not None, f"no Nats-Request-Info header: {req.headers}"
            assert json.loads(info).get("acc") == "B", info

            # B's own svc.echo is B's: it reaches nobody in A.
            await b_reaches_nobody_in_a(a, b, [("svc.echo", b"stray from B")], {"svc.echo": service, "echo": a_echo})
            await close(a, b, *spares)

    run(main())


def test_pub_sub_across_the_stream_import(accounts):
    async def main():
        for round_ in range(ROUNDS):
            a, b, spares = await accounts(round_)
            imported = await b.subscribe("fromA.events.>")
            b_events = await b.subscribe("events.>")
            a_events = await a.subscribe("events.>")
            a_prefixed = await a.subscribe("fromA.>")
            await synced(b, a)

            event = f"event {round_}".encode()
            await a.publish("events.x", event)
            await synced(a)
            assert seen(await imported.next_msg(timeout=WAIT)) == ("fromA.events.x", event), round_
            assert seen(await a_events.next_msg(timeout=WAIT)) == ("events.x", event), round_

            # B's publishes stay in B: A's subscribers get only A's markers, and B's own
            # get them first of all (so A's event did not reach B's events.>).
            mine = f"from B {round_}".encode()
            b_publishes = [("events.x", mine), ("fromA.events.x", mine)]
            await b_reaches_nobody_in_a(a, b, b_publishes, {"events.marker": a_events, "fromA.marker": a_prefixed})
            assert seen(await b_events.next_msg(timeout=WAIT)) == ("events.x", mine), round_
            assert seen(await imported.next_msg(timeout=WAIT)) == ("fromA.events.x", mine), round_
            await close(a, b, *spares)

    run(main())
