"""nats-py (the official Python client) against the broker's authentication, authorization
and TLS: every case runs the same way against natsu and against the reference nats-server
(`NATSU_TEST_TARGET=reference`), and expects the same outcome from both.

- credentials: user/password and token, plain or bcrypt, from flags or a config file, and a
  users list; good ones connect and carry messages, bad or missing ones are refused with
  `-ERR 'Authorization Violation'`;
- permissions: a denied publish or subscription is an asynchronous error, the connection
  stays usable, and nothing leaks through;
- TLS: certificates made at test time with the `openssl` CLI (the TLS cases are skipped
  without it); pub/sub over TLS; with client verification, no client certificate or one
  from another CA is refused; a client that does not trust the server's CA refuses it.

bcrypt hashes come from Python's `bcrypt` module when it is installed, else from
`target/release/natsu-mkpasswd -p` (`NATSU_MKPASSWD` to point elsewhere); both servers read
the `$2a$` hashes either makes.

Like test_nats_py.py: plain synchronous pytest functions running their coroutine with
`asyncio.run`, no reconnects, every wait bounded, ordering from round trips, not sleeps.
"""

import asyncio
import functools
import os
import pathlib
import random
import shutil
import ssl
import subprocess
import types

import nats
import nats.errors
import pytest

from probe import barrier, start_probe

REPO = pathlib.Path(__file__).resolve().parents[2]

# Upper bound on one wait, and on a whole test.
WAIT = 5.0
TEST_TIMEOUT = 30.0

# Credentials distinctive enough to spot in a log.
USER = "alice"
PASS = "s3cr3t-pw"
TOKEN = "t0k3n-s3cret"

# What nats-py raises when the server answers CONNECT with -ERR 'Authorization Violation':
# during the handshake it raises the base `nats.errors.Error` with the server's text
# (its `AuthorizationError` is only for an -ERR arriving after the handshake).
AUTH_VIOLATION = "nats: 'Authorization Violation'"


def run(coro):
    """Run one test coroutine, failing it if it takes longer than TEST_TIMEOUT."""
    return asyncio.run(asyncio.wait_for(coro, TEST_TIMEOUT))


async def _quiet(_err):
    """Error callback for clients whose errors the test reads from the exception."""


async def connect(port_or_url, *, error_cb=_quiet, **kwargs):
    # No reconnects: a refused or lost connection must fail at once, not be retried.
    url = port_or_url if isinstance(port_or_url, str) else f"nats://127.0.0.1:{port_or_url}"
    return await nats.connect(url, allow_reconnect=False, connect_timeout=WAIT, error_cb=error_cb, **kwargs)


async def refused(port_or_url, **kwargs):
    """Connect, expecting to be refused; return the exception."""
    try:
        nc = await connect(port_or_url, **kwargs)
    except Exception as e:  # the caller checks the kind
        return e
    await nc.close()
    pytest.fail(f"connected with {sorted(kwargs)} although the server should refuse")


def assert_auth_violation(err):
    assert type(err) is nats.errors.Error and str(err) == AUTH_VIOLATION, repr(err)


async def round_trip(nc, subject="auth.check"):
    """Subscribe and publish on `nc`, and get the message back: the connection carries
    messages (the server handles one connection's SUB before its later PUB)."""
    sub = await nc.subscribe(subject)
    await nc.publish(subject, b"hello", headers={"X-Check": "1"})
    m = await sub.next_msg(timeout=WAIT)
    assert (m.subject, m.data, m.headers) == (subject, b"hello", {"X-Check": "1"})
    await sub.unsubscribe()


# --- bcrypt -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def bcrypt_hash(secret):
    """A `$2a$` bcrypt hash (cost 4: fast) of `secret`."""
    try:
        import bcrypt
    except ImportError:
        bcrypt = None
    if bcrypt is not None:
        h = bcrypt.hashpw(secret.encode(), bcrypt.gensalt(rounds=4)).decode()
    else:
        tool = pathlib.Path(os.environ.get("NATSU_MKPASSWD", REPO / "target/release/natsu-mkpasswd"))
        if not tool.is_file():
            pytest.skip(f"no bcrypt module and no natsu-mkpasswd at {tool}: cannot make a bcrypt hash")
        out = subprocess.run(
            [str(tool), "-p", "-c", "4"], input=secret + "\n", capture_output=True, text=True, timeout=30, check=True
        ).stdout
        h = out.split("bcrypt hash:", 1)[1].strip()
    # Python's bcrypt writes $2b$; $2a$ is the same hash for these short secrets and the
    # prefix every nats-server release takes for bcrypt.
    assert h[:4] in ("$2a$", "$2b$"), h
    return "$2a$" + h[4:]


def with_hashes(items):
    """`items` with PASS_HASH and TOKEN_HASH replaced by bcrypt hashes of PASS and TOKEN."""
    subst = lambda s: s.replace("PASS_HASH", bcrypt_hash(PASS)).replace("TOKEN_HASH", bcrypt_hash(TOKEN))
    if items is None:
        return None
    if isinstance(items, str):
        return subst(items)
    return [subst(a) for a in items]


# --- credentials --------------------------------------------------------------------------

USER_GOOD = {"user": USER, "password": PASS}
USER_BAD = [
    {"user": USER, "password": "wrong"},
    {"user": "mallory", "password": PASS},
    {"token": PASS},
    {},
]
TOKEN_GOOD = {"token": TOKEN}
TOKEN_BAD = [{"token": "wrong"}, {"user": USER, "password": TOKEN}, {}]

AUTH_CASES = [
    pytest.param(["--user", USER, "--pass", PASS], None, USER_GOOD, USER_BAD, id="user-pass-flags"),
    pytest.param(["--user", USER, "--pass", "PASS_HASH"], None, USER_GOOD, USER_BAD, id="user-bcrypt-flags"),
    pytest.param([], f'authorization {{ user: {USER}, password: "{PASS}" }}', USER_GOOD, USER_BAD, id="user-pass-conf"),
    pytest.param([], f'authorization {{ user: {USER}, password: "PASS_HASH" }}', USER_GOOD, USER_BAD, id="user-bcrypt-conf"),
    pytest.param(["--auth", TOKEN], None, TOKEN_GOOD, TOKEN_BAD, id="token-flag"),
    pytest.param([], f'authorization {{ token: "{TOKEN}" }}', TOKEN_GOOD, TOKEN_BAD, id="token-conf"),
    pytest.param([], 'authorization { token: "TOKEN_HASH" }', TOKEN_GOOD, TOKEN_BAD, id="token-bcrypt-conf"),
    pytest.param(
        [],
        f"""authorization {{
            users = [
                {{ user: bob, password: "other-pw" }}
                {{ user: {USER}, password: "PASS_HASH" }}
            ]
        }}""",
        USER_GOOD,
        USER_BAD + [{"user": "bob", "password": PASS}],
        id="users-conf",
    ),
]


@pytest.mark.parametrize("args,conf,good,bad", AUTH_CASES)
def test_credentials(start_broker, args, conf, good, bad):
    port = start_broker(with_hashes(args), with_hashes(conf))

    async def main():
        nc = await connect(port, **good)
        await round_trip(nc)
        await nc.close()
        for creds in bad:
            err = await refused(port, **creds)
            assert_auth_violation(err)
        # Credentials in the URL are sent like options.
        if "user" in good:
            nc = await connect(f"nats://{good['user']}:{good['password']}@127.0.0.1:{port}")
            await round_trip(nc)
            await nc.close()

    run(main())


# --- permissions --------------------------------------------------------------------------

PERMISSIONS_CONF = """
authorization {
    users = [
        { user: admin, password: "admin-pw" }
        { user: limited, password: "limited-pw", permissions: {
            publish: ["public.>", "_INBOX.>"]
            subscribe: { allow: ["public.>", "_INBOX.>"], deny: ["public.hidden"] }
        } }
    ]
}
"""


async def error_queue():
    """An error callback that queues what it gets, and the queue."""
    errors = asyncio.Queue()

    async def cb(err):
        errors.put_nowait(err)

    return cb, errors


async def next_error(errors):
    try:
        return await asyncio.wait_for(errors.get(), WAIT)
    except asyncio.TimeoutError:
        pytest.fail(f"no asynchronous error within {WAIT}s")


def assert_permissions_error(err, text):
    # nats-py lowercases the server's -ERR text and hands it to the error callback as the
    # base Error; the connection stays open.
    assert type(err) is nats.errors.Error and str(err) == f"nats: {text}", repr(err)


def test_denied_publish_is_an_async_error_and_goes_nowhere(start_broker):
    port = start_broker(conf=PERMISSIONS_CONF)

    async def main():
        cb, errors = await error_queue()
        admin = await connect(port, user="admin", password="admin-pw")
        limited = await connect(port, user="limited", password="limited-pw", error_cb=cb)
        # "*.x" takes both the denied and the allowed subject, not the probe's inbox.
        seen = await admin.subscribe("*.x")
        await barrier(limited, await start_probe(admin))

        await limited.publish("secret.x", b"denied")
        await limited.publish("public.x", b"allowed")
        assert_permissions_error(await next_error(errors), 'permissions violation for publish to "secret.x"')
        # The denied message went first: had it been delivered, it would be first here.
        m = await seen.next_msg(timeout=WAIT)
        assert (m.subject, m.data) == ("public.x", b"allowed")

        # Still connected and still working.
        assert limited.is_connected
        await round_trip(limited, "public.again")
        await limited.publish("secret.y", b"denied again")
        assert_permissions_error(await next_error(errors), 'permissions violation for publish to "secret.y"')
        assert limited.is_connected
        assert errors.empty()
        await admin.close()
        await limited.close()

    run(main())


def test_denied_subscription_is_an_async_error_and_gets_nothing(start_broker):
    port = start_broker(conf=PERMISSIONS_CONF)

    async def main():
        cb, errors = await error_queue()
        admin = await connect(port, user="admin", password="admin-pw")
        limited = await connect(port, user="limited", password="limited-pw", error_cb=cb)

        allowed = await limited.subscribe("public.>")
        denied = await limited.subscribe("secret.>")
        # The server handles SUBs in order: this error means both SUBs were taken.
        assert_permissions_error(await next_error(errors), 'permissions violation for subscription to "secret.>"')
        hidden = await limited.subscribe("public.hidden")
        assert_permissions_error(
            await next_error(errors), 'permissions violation for subscription to "public.hidden"'
        )

        # The errors came after the server took the allowed SUB, but say nothing of other
        # connections seeing it yet (natsu on several cores tells other cores
        # asynchronously): a probe round trip from the admin's side does.
        await barrier(admin, await start_probe(limited))

        # A message the denied subscriptions would take, then ones the allowed one takes:
        # messages to one connection arrive in order, so by the time "public.y" is in,
        # anything for the denied subscriptions would be queued already. "public.hidden"
        # matches the allowed "public.>" too, but the deny clause keeps it from this user.
        await admin.publish("secret.y", b"nope")
        await admin.publish("public.hidden", b"nope")
        await admin.publish("public.y", b"yes")
        m = await allowed.next_msg(timeout=WAIT)
        assert (m.subject, m.data) == ("public.y", b"yes")
        assert (denied.pending_msgs, hidden.pending_msgs) == (0, 0)

        assert limited.is_connected
        await round_trip(limited, "public.again")
        assert errors.empty()
        await admin.close()
        await limited.close()

    run(main())


# --- TLS ----------------------------------------------------------------------------------

OPENSSL_CNF = """
[req]
distinguished_name = dn
prompt = no
[dn]
CN = natsu test
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


class Certs:
    """Throw-away certificates made with the openssl CLI in a temporary directory, from an
    openssl.cnf whose extension sections the callers name. Nothing is checked in."""

    NEWKEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def __init__(self, tmp_path_factory, name, cnf, why):
        self.openssl = shutil.which("openssl")
        if self.openssl is None:
            pytest.skip(f"the openssl CLI is not on PATH: {why}")
        self.dir = tmp_path_factory.mktemp(name)
        self.cnf = self.dir / "openssl.cnf"
        self.cnf.write_text(cnf)

    def ossl(self, *args):
        r = subprocess.run([self.openssl, *args], cwd=self.dir, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"openssl {' '.join(args)}:\n{r.stderr}"

    def ca(self, name, cn):
        self.ossl("req", "-x509", "-config", str(self.cnf), "-extensions", "ca_ext", *self.NEWKEY,
                  "-keyout", f"{name}-key.pem", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={cn}")

    def leaf(self, name, cn, issuer, ext):
        self.ossl("req", "-new", "-config", str(self.cnf), *self.NEWKEY, "-keyout", f"{name}-key.pem",
                  "-out", f"{name}.csr", "-subj", f"/CN={cn}")
        self.ossl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{issuer}.pem", "-CAkey", f"{issuer}-key.pem",
                  "-set_serial", str(random.getrandbits(63)), "-days", "2", "-extfile", str(self.cnf),
                  "-extensions", ext, "-out", f"{name}.pem")

    def paths(self, names):
        """PEM paths by name (`-` becomes `_`)."""
        return types.SimpleNamespace(**{n.replace("-", "_"): str(self.dir / f"{n}.pem") for n in names})


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A throw-away PKI: a CA, a server certificate for 127.0.0.1 and localhost, a client
    certificate, and a second CA (with a client certificate) that the server does not trust.
    Paths to PEM files."""
    c = Certs(tmp_path_factory, "pki", OPENSSL_CNF, "the TLS cases need it to make certificates")
    c.ca("ca", "natsu test CA")
    c.ca("other-ca", "untrusted CA")
    c.leaf("server", "localhost", "ca", "server_ext")
    c.leaf("client", "natsu-client", "ca", "client_ext")
    c.leaf("rogue", "rogue-client", "other-ca", "client_ext")
    return c.paths(["ca", "other-ca", "server", "server-key", "client", "client-key", "rogue", "rogue-key"])


def client_ctx(ca, cert=None, key=None):
    """A client context trusting only `ca`, with a client certificate if given."""
    ctx = ssl.create_default_context(cafile=ca)
    if cert is not None:
        ctx.load_cert_chain(cert, key)
    return ctx


def tls_flags(pki, verify=False):
    flags = ["--tls", "--tlscert", pki.server, "--tlskey", pki.server_key]
    if verify:
        flags += ["--tlsverify", "--tlscacert", pki.ca]
    return flags


def tls_conf(pki, verify=False):
    extra = f'ca_file: "{pki.ca}"\n        verify: true' if verify else ""
    return f"""
    tls {{
        cert_file: "{pki.server}"
        key_file: "{pki.server_key}"
        {extra}
        timeout: 2
    }}
    """


@pytest.mark.parametrize("how", ["flags", "conf"])
def test_tls_pub_sub(start_broker, pki, how):
    port = start_broker(tls_flags(pki)) if how == "flags" else start_broker(conf=tls_conf(pki))

    async def main():
        # A tls:// URL, and a nats:// one upgraded because the server's INFO requires TLS.
        for url in [f"tls://127.0.0.1:{port}", f"nats://127.0.0.1:{port}", f"tls://localhost:{port}"]:
            nc = await connect(url, tls=client_ctx(pki.ca))
            await round_trip(nc)
            await nc.close()

    run(main())


def test_tls_client_that_does_not_trust_the_ca_refuses_the_server(start_broker, pki):
    port = start_broker(tls_flags(pki))

    async def main():
        err = await refused(f"tls://127.0.0.1:{port}", tls=client_ctx(pki.other_ca))
        assert isinstance(err, ssl.SSLCertVerificationError), repr(err)
        # The server is still there for a client that trusts it.
        nc = await connect(f"tls://127.0.0.1:{port}", tls=client_ctx(pki.ca))
        await round_trip(nc)
        await nc.close()

    run(main())


def assert_refused_by_server_tls(err):
    """The server's TLS refused the client. TLS 1.3 checks the client's certificate after
    the client's side of the handshake, so the client learns of it after nats-py has
    written CONNECT: as the server's alert on its read (ssl.SSLError), or, when the close
    overtakes nats-py's next write or read, as a reset or broken pipe. Which one is timing
    (both servers show all of them), so only the family is checked here; the alert itself
    is checked by tests/real_clients_auth_tls.rs, where async-nats reads it every time."""
    assert isinstance(err, (ssl.SSLError, ConnectionError)), repr(err)
    assert not isinstance(err, ssl.SSLCertVerificationError), repr(err)
    if isinstance(err, ssl.SSLError):
        assert "ALERT" in (err.reason or ""), repr(err)


@pytest.mark.parametrize("how", ["flags", "conf"])
def test_tls_verify_requires_a_client_certificate_from_the_ca(start_broker, pki, how):
    port = start_broker(tls_flags(pki, verify=True)) if how == "flags" else start_broker(conf=tls_conf(pki, verify=True))
    url = f"tls://127.0.0.1:{port}"

    async def main():
        err = await refused(url, tls=client_ctx(pki.ca))
        assert_refused_by_server_tls(err)
        err = await refused(url, tls=client_ctx(pki.ca, pki.rogue, pki.rogue_key))
        assert_refused_by_server_tls(err)
        nc = await connect(url, tls=client_ctx(pki.ca, pki.client, pki.client_key))
        await round_trip(nc)
        await nc.close()

    run(main())


def test_tls_and_credentials_from_one_config_file(start_broker, pki):
    conf = tls_conf(pki) + f'authorization {{ user: {USER}, password: "PASS_HASH" }}'
    port = start_broker(conf=with_hashes(conf))
    url = f"tls://127.0.0.1:{port}"

    async def main():
        nc = await connect(url, tls=client_ctx(pki.ca), **USER_GOOD)
        await round_trip(nc)
        await nc.close()
        assert_auth_violation(await refused(url, tls=client_ctx(pki.ca), user=USER, password="wrong"))
        assert_auth_violation(await refused(url, tls=client_ctx(pki.ca)))

    run(main())
