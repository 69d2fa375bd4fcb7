"""nats-py (the official Python client) logging in as an NKey user and with a client
certificate mapped to a user (`tls { verify_and_map: true }`), the same way against natsu
and against the reference nats-server (`NATSU_TEST_TARGET=reference`).

- NKey: nats-py signs the INFO nonce with the seed (`nkeys_seed_str`, which needs the
  `nkeys` package; scripts/test.sh installs it); the right seed logs in and carries
  messages, a seed the server does not know is refused with `Authorization Violation`.
- verify_and_map: certificates made at test time with the `openssl` CLI (skipped without
  it): one whose email SAN names a user logs in as that user (its permissions show it),
  one that names no user is refused with `Authorization Violation`.

Keys and certificates are made afresh; nothing secret is checked in.
"""

import asyncio
import os

import pytest

from test_auth_tls import AUTH_VIOLATION, Certs, assert_auth_violation, client_ctx, connect, refused, round_trip, run
from test_auth_tls import OPENSSL_CNF as TLS_OPENSSL_CNF

nkeys = pytest.importorskip("nkeys", reason="nats-py's NKey login needs the nkeys package (pip install nkeys)")


def new_user_seed():
    """A fresh NKey user: (seed, public key)."""
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    return seed.decode(), nkeys.from_seed(bytearray(seed)).public_key.decode()


def test_nkey_login(start_broker):
    seed, public = new_user_seed()
    stranger, _ = new_user_seed()
    port = start_broker(conf=f"authorization {{ users = [ {{ nkey: {public} }} ] }}")

    async def main():
        nc = await connect(port, nkeys_seed_str=seed)
        await round_trip(nc)
        await nc.close()
        assert_auth_violation(await refused(port, nkeys_seed_str=stranger))
        assert_auth_violation(await refused(port))

    run(main())


# test_auth_tls's CA and server sections, and two client certificates of our own.
OPENSSL_CNF = TLS_OPENSSL_CNF + """
[alice_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = email:alice@example.com
[nobody_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = email:nobody@example.com, DNS:nobody.example.com
"""


@pytest.fixture(scope="module")
def map_pki(tmp_path_factory):
    """A CA, a server certificate, a client certificate whose email SAN is a user's name
    (`alice`) and one that names no user (`nobody`)."""
    c = Certs(tmp_path_factory, "map-pki", OPENSSL_CNF, "the certificate mapping case needs it")
    c.ca("ca", "natsu map CA")
    for name, cn, ext in [("server", "localhost", "server_ext"), ("alice", "alice", "alice_ext"), ("nobody", "nobody", "nobody_ext")]:
        c.leaf(name, cn, "ca", ext)
    return c.paths(["ca", "server", "server-key", "alice", "alice-key", "nobody", "nobody-key"])


def test_mapped_certificate(start_broker, map_pki):
    conf = f"""
    tls {{
        cert_file: "{map_pki.server}"
        key_file: "{map_pki.server_key}"
        ca_file: "{map_pki.ca}"
        verify_and_map: true
    }}
    authorization {{
        users = [
            {{ user: "alice@example.com", permissions: {{ publish: ["alice.>"], subscribe: ["alice.>"] }} }}
            {{ user: "bob", password: "bob-pw" }}
        ]
    }}
    """
    port = start_broker(conf=conf)
    url = f"tls://127.0.0.1:{port}"

    async def main():
        errors = asyncio.Queue()

        async def on_error(e):
            await errors.put(e)

        nc = await connect(url, tls=client_ctx(map_pki.ca, map_pki.alice, map_pki.alice_key), error_cb=on_error)
        await round_trip(nc, "alice.check")
        # The user's permissions: it is alice.
        await nc.publish("bob.check", b"x")
        err = await asyncio.wait_for(errors.get(), 5.0)
        assert 'permissions violation for publish to "bob.check"' in str(err).lower(), repr(err)
        await nc.close()
        # A certificate that names no user is refused after the handshake.
        err = await refused(url, tls=client_ctx(map_pki.ca, map_pki.nobody, map_pki.nobody_key))
        assert str(err) == AUTH_VIOLATION, repr(err)

    run(main())
