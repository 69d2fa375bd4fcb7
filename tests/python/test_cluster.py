"""nats-py against a cluster: discovery and failover, as a client given one node's URL sees
them.

- nats-py connected to node A of a two-node cluster has B in its server pool (from
  `connect_urls` in A's INFO), and learns of a third node C from the INFO update A sends
  when C joins (`discovered_server_cb`);
- after A is killed (SIGKILL) nats-py reconnects to a node it discovered, and its
  subscription gets what the other nodes publish.

Every node is natsu, or the reference nats-server with `NATSU_TEST_TARGET=reference`
(`start_node` in conftest.py). Like test_nats_py.py: plain synchronous pytest functions
running their coroutine with `asyncio.run`, every wait bounded, ordering from round trips.
"""

import asyncio
import json
import socket
import time

import nats
import pytest

from conftest import _free_port
from probe import barrier, start_probe

CLUSTER_NAME = "natsu-test"

# Upper bound on one wait (a mesh forming, a message, a reconnect), and on a whole test.
WAIT = 10.0
TEST_TIMEOUT = 60.0


def run(coro):
    """Run one test coroutine, failing it if it takes longer than TEST_TIMEOUT."""
    return asyncio.run(asyncio.wait_for(coro, TEST_TIMEOUT))


def start_cluster_node(start_node, routes=()):
    """A node of the test cluster naming `routes` (route URLs); returns (node, route URL)."""
    cluster_port = _free_port()
    args = ["--cluster", f"nats://127.0.0.1:{cluster_port}", "--cluster_name", CLUSTER_NAME]
    if routes:
        args += ["--routes", ",".join(routes)]
    return start_node(args), f"nats://127.0.0.1:{cluster_port}"


def connect_urls(port):
    """`connect_urls` of the INFO a new connection to `port` is sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                pytest.fail(f"port {port} closed before its INFO: {data!r}")
            data += chunk
    line = data.split(b"\r\n", 1)[0].decode()
    assert line.startswith("INFO "), line
    return json.loads(line[5:]).get("connect_urls", [])


def wait_urls(nodes):
    """Wait until every node tells its clients of every node (the mesh has formed)."""
    want = {f"127.0.0.1:{n.port}" for n in nodes}
    deadline = time.monotonic() + WAIT
    for node in nodes:
        while set(connect_urls(node.port)) != want:
            if time.monotonic() > deadline:
                pytest.fail(f"127.0.0.1:{node.port}: connect_urls {connect_urls(node.port)}, want {sorted(want)}")
            time.sleep(0.05)  # polling the nodes' INFO while their routes form


def netlocs(uris):
    return {u.netloc for u in uris}


def addr(node):
    return f"127.0.0.1:{node.port}"


async def wait_event(event, what):
    try:
        await asyncio.wait_for(event.wait(), WAIT)
    except asyncio.TimeoutError:
        pytest.fail(f"waited {WAIT}s for {what}")


def test_discovery(start_node):
    a, a_route = start_cluster_node(start_node)
    b, _ = start_cluster_node(start_node, [a_route])
    wait_urls([a, b])

    async def main():
        discovered = asyncio.Event()

        async def on_discovered():
            discovered.set()

        nc = await nats.connect(servers=[a.url], discovered_server_cb=on_discovered, allow_reconnect=False, connect_timeout=WAIT)
        assert netlocs(nc.discovered_servers) == {addr(b)}, nc.discovered_servers
        assert netlocs(nc.servers) == {addr(a), addr(b)}, nc.servers

        c, _ = start_cluster_node(start_node, [a_route])
        await wait_event(discovered, "nats-py to be told of a third node")
        assert netlocs(nc.discovered_servers) == {addr(b), addr(c)}, nc.discovered_servers
        assert netlocs(nc.servers) == {addr(a), addr(b), addr(c)}, nc.servers
        await nc.close()

    run(main())


def test_reconnect_to_discovered_node(start_node):
    a, a_route = start_cluster_node(start_node)
    b, _ = start_cluster_node(start_node, [a_route])
    c, _ = start_cluster_node(start_node, [a_route])
    wait_urls([a, b, c])

    async def main():
        reconnected = asyncio.Event()

        async def on_reconnected():
            reconnected.set()

        nc = await nats.connect(
            servers=[a.url],
            reconnected_cb=on_reconnected,
            reconnect_time_wait=0.2,
            max_reconnect_attempts=50,
            connect_timeout=2,
        )
        assert netlocs(nc.discovered_servers) == {addr(b), addr(c)}, nc.discovered_servers
        publishers = {addr(n): await nats.connect(n.url, allow_reconnect=False, connect_timeout=WAIT) for n in (b, c)}
        received = asyncio.Queue()

        async def on_msg(msg):
            await received.put(msg.data.decode())

        await nc.subscribe("keep.going", cb=on_msg)

        async def each_publisher_reaches(when):
            probe = await start_probe(nc)
            for name, pub in publishers.items():
                await barrier(pub, probe)
                await pub.publish("keep.going", name.encode())
                await pub.flush()
                try:
                    got = await asyncio.wait_for(received.get(), WAIT)
                except asyncio.TimeoutError:
                    pytest.fail(f"{when}: nothing published on {name} arrived within {WAIT}s")
                assert got == name, when

        await each_publisher_reaches("before the kill")
        a.kill()
        await wait_event(reconnected, f"nats-py to reconnect after {addr(a)} was killed")
        assert nc.connected_url.netloc in {addr(b), addr(c)}, nc.connected_url
        await each_publisher_reaches(f"after reconnecting to {nc.connected_url.netloc}")
        for pub in publishers.values():
            await pub.close()
        await nc.close()

    run(main())
