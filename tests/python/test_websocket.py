"""nats-py over the broker's WebSocket port (`websocket {}`): ws:// and wss:// URLs (nats-py's
aiohttp transport), with TCP clients on the client port in the same exchanges.

- pub/sub both ways between a WebSocket client and a TCP client, with headers;
- request/reply: a WebSocket requester and a TCP responder, and the other way round;
- wss:// with a certificate the client trusts;
- the WebSocket port's own token, while the client port asks for none.

The same tests run against nats-server with NATSU_TEST_TARGET=reference.
"""

import asyncio

import nats
import pytest

from conftest import _free_port
from probe import barrier, start_probe
from test_auth_tls import client_ctx, pki  # noqa: F401  (pki is a fixture)




def run(coro):
    asyncio.run(asyncio.wait_for(coro, 30))


async def _quiet(_err):
    pass


def ws_conf(ws_port, extra="no_tls: true"):
    return f"""
    websocket {{
        listen: "127.0.0.1:{ws_port}"
        {extra}
    }}
    """


def test_ws_and_tcp_clients_exchange_messages_and_requests(start_broker):
    ws_port = _free_port()
    port = start_broker(conf=ws_conf(ws_port))

    async def main():
        ws = await nats.connect(f"ws://127.0.0.1:{ws_port}", error_cb=_quiet, max_reconnect_attempts=0)
        tcp = await nats.connect(f"nats://127.0.0.1:{port}", error_cb=_quiet, max_reconnect_attempts=0)
        try:
            # TCP → WebSocket, in order, with headers.
            # (nats-py's flush() can send its PING before the SUB: a probe orders them.)
            sub = await ws.subscribe("news")
            await barrier(tcp, await start_probe(ws))
            for i in range(50):
                await tcp.publish("news", f"n{i}".encode(), headers={"Seq": str(i)})
            for i in range(50):
                m = await sub.next_msg(timeout=5)
                assert (m.data, m.headers["Seq"]) == (f"n{i}".encode(), str(i))
            # WebSocket → TCP.
            sub2 = await tcp.subscribe("uplink")
            await barrier(ws, await start_probe(tcp))
            await ws.publish("uplink", b"x" * 70000)
            await ws.flush()
            m = await sub2.next_msg(timeout=5)
            assert m.data == b"x" * 70000

            # Request/reply both ways.
            async def echo(msg):
                await msg.respond(b"re:" + msg.data)

            await tcp.subscribe("svc.tcp", cb=echo)
            await ws.subscribe("svc.ws", cb=echo)
            await barrier(ws, await start_probe(tcp))
            await barrier(tcp, await start_probe(ws))
            for i in range(20):
                r = await ws.request("svc.tcp", f"q{i}".encode(), timeout=5)
                assert r.data == f"re:q{i}".encode()
                r = await tcp.request("svc.ws", f"p{i}".encode(), timeout=5)
                assert r.data == f"re:p{i}".encode()
            # No responders, to a WebSocket requester.
            with pytest.raises(nats.errors.NoRespondersError):
                await ws.request("nobody.home", b"?", timeout=5)
        finally:
            await ws.close()
            await tcp.close()

    run(main())


def test_wss_with_a_trusted_certificate(start_broker, pki):  # noqa: F811
    ws_port = _free_port()
    tls = f'tls {{ cert_file: "{pki.server}", key_file: "{pki.server_key}" }}'
    start_broker(conf=ws_conf(ws_port, tls))

    async def main():
        nc = await nats.connect(f"wss://127.0.0.1:{ws_port}", tls=client_ctx(pki.ca), error_cb=_quiet, max_reconnect_attempts=0)
        try:
            sub = await nc.subscribe("secure")
            await nc.publish("secure", b"over wss")
            m = await sub.next_msg(timeout=5)
            assert m.data == b"over wss"
        finally:
            await nc.close()

    run(main())


def test_the_websocket_port_asks_for_its_own_token(start_broker):
    ws_port = _free_port()
    port = start_broker(conf=ws_conf(ws_port, "no_tls: true\n authorization { token: web-token }"))

    async def main():
        nc = await nats.connect(f"ws://127.0.0.1:{ws_port}", token="web-token", error_cb=_quiet, max_reconnect_attempts=0)
        await nc.flush()
        await nc.close()
        with pytest.raises(Exception):
            await nats.connect(f"ws://127.0.0.1:{ws_port}", error_cb=_quiet, allow_reconnect=False, max_reconnect_attempts=0)
        # The client port is open to anyone.
        tcp = await nats.connect(f"nats://127.0.0.1:{port}", error_cb=_quiet, max_reconnect_attempts=0)
        await tcp.flush()
        await tcp.close()

    run(main())
