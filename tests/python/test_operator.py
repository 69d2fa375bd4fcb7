"""nats-py (the official Python client) logging in with a `.creds` file in operator mode
(`operator`, `resolver: MEMORY`, `resolver_preload`), the same way against natsu and
against the reference nats-server (`NATSU_TEST_TARGET=reference`).

The operator, account and user JWTs are made here, with the `nkeys` package signing and a
few lines of JSON and base64 (independently of natsu's own JWT code): a user of a preloaded
account logs in and carries messages; a user whose `.creds` seed is not its JWT's key, and
a user of an account nobody preloaded, are refused with `Authorization Violation`; a user
JWT's permissions hold (a publish it may not make is reported, the connection stays).
"""

import base64
import json
import os
import time

import pytest

from test_auth_tls import assert_auth_violation, connect, refused, round_trip, run

nkeys = pytest.importorskip("nkeys", reason="nats-py's JWT login needs the nkeys package (pip install nkeys)")


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_key(prefix):
    """A fresh key pair: (seed, public key, signing object)."""
    seed = nkeys.encode_seed(os.urandom(32), prefix)
    kp = nkeys.from_seed(bytearray(seed))
    return seed.decode(), kp.public_key.decode(), kp


def encode(subject, kind, nats_part, issuer_kp, name="x"):
    """A version 2 JWT about `subject`, signed by `issuer_kp`."""
    header = b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    nats_part = dict(nats_part, type=kind, version=2)
    claims = {"iat": int(time.time()), "iss": issuer_kp.public_key.decode(), "name": name, "sub": subject, "nats": nats_part}
    body = b64(json.dumps(claims).encode())
    sig = issuer_kp.sign(f"{header}.{body}".encode())
    return f"{header}.{body}.{b64(sig)}"


UNLIMITED = {"subs": -1, "data": -1, "payload": -1}
ACCOUNT_LIMITS = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": True, "conn": -1, "leaf": -1}


def creds(jwt, seed):
    return (
        f"-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
    )


@pytest.fixture
def operator_setup(tmp_path, start_broker):
    _, op_pub, op = new_key(nkeys.PREFIX_BYTE_OPERATOR)
    _, acc_pub, acc = new_key(nkeys.PREFIX_BYTE_ACCOUNT)
    _, _, stranger = new_key(nkeys.PREFIX_BYTE_ACCOUNT)
    (tmp_path / "op.jwt").write_text(encode(op_pub, "operator", {}, op, "OP"))
    account_jwt = encode(acc_pub, "account", {"limits": ACCOUNT_LIMITS}, op, "A")
    conf = f'operator: "{tmp_path / "op.jwt"}"\nresolver: MEMORY\nresolver_preload: {{\n  {acc_pub}: "{account_jwt}"\n}}\n'
    port = start_broker(conf=conf)

    def user_creds(file, signer=acc, perms=None, seed_of_another=False):
        seed, pub, _ = new_key(nkeys.PREFIX_BYTE_USER)
        if seed_of_another:
            seed, _, _ = new_key(nkeys.PREFIX_BYTE_USER)
        jwt = encode(pub, "user", dict(UNLIMITED, **(perms or {})), signer)
        path = tmp_path / file
        path.write_text(creds(jwt, seed))
        return str(path)

    return port, user_creds, stranger


def test_creds_login(operator_setup):
    port, user_creds, stranger = operator_setup
    good = user_creds("good.creds")
    wrong_seed = user_creds("wrong.creds", seed_of_another=True)
    unknown = user_creds("unknown.creds", signer=stranger)

    async def main():
        nc = await connect(port, user_credentials=good)
        await round_trip(nc)
        await nc.close()
        assert_auth_violation(await refused(port, user_credentials=wrong_seed))
        assert_auth_violation(await refused(port, user_credentials=unknown))

    run(main())


def test_creds_permissions(operator_setup):
    port, user_creds, _ = operator_setup
    limited = user_creds("limited.creds", perms={"pub": {"allow": ["ok.>"]}})

    async def main():
        import asyncio

        errors = asyncio.Queue()

        async def cb(err):
            errors.put_nowait(err)

        nc = await connect(port, user_credentials=limited, error_cb=cb)
        sub = await nc.subscribe("ok.1")
        await nc.publish("ok.1", b"fine")
        assert (await sub.next_msg(timeout=5)).data == b"fine"
        await nc.publish("denied", b"no")
        err = await asyncio.wait_for(errors.get(), 5)
        assert "permissions violation for publish to" in str(err).lower(), repr(err)
        assert nc.is_connected
        await nc.close()

    run(main())
