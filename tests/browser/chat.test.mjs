// natsu-gateway's WebSocket bridge in a real browser: natsu-chat-demo in headless Chromium.
//
//   cargo build --release                      # natsu, natsu-gateway, natsu-chat-demo
//   cd tests/browser && npm ci && node chat.test.mjs
//
// Starts, from target/release (or $CARGO_TARGET_DIR/release), the broker, the gateway with
// two executors (so that the two browsers' sockets may sit on different executors and NATS
// connections) and the chat service, each on a free loopback port; waits for the gateway's
// /healthz and for the service to answer GET / through it. Then two browser contexts (two
// users, nothing shared) load the page from the gateway and join as alice and bob; each
// says something and the other sees it (WS_IN → service → WS_OUT, both ways); bob's context
// is closed and alice must see "* bob left", which she only can if the gateway told the
// service that bob's socket went away (WS_GONE). Exit code 0 when all of it held, 1
// otherwise; every process started here is stopped by its PID, on failure too.
//
// Chromium is Debian's (/usr/bin/chromium, or $CHROMIUM); playwright-core never downloads
// one. Environment: NATSU_BROWSER_TEST_TIMEOUT (seconds, the whole run; default 120).

import { existsSync } from "node:fs";
import path from "node:path";

import {
  HOST, RELEASE_DIR, WAIT_MS, check, children, freePorts, launchChromium, listening, log, openPage, run, start,
  waitFor,
} from "./harness.mjs";

/** Start one of the binaries cargo build --release makes. */
function startBin(name, args) {
  const file = path.join(RELEASE_DIR, name);
  if (!existsSync(file)) {
    throw new Error(`${file} is missing: run cargo build --release first`);
  }
  return start(file, args);
}

// ---- http -------------------------------------------------------------------------------

async function httpGet(url) {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  return { status: res.status, type: res.headers.get("content-type") || "", body: await res.text() };
}

/** The value of an unlabelled series in the gateway's /metrics. */
async function metric(monitorUrl, name) {
  const { body } = await httpGet(`${monitorUrl}/metrics`);
  const line = body.split("\n").find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

// ---- the browser side -------------------------------------------------------------------

/** A user: a browser context of its own with the chat page, joined as `name`. */
async function join(url, name) {
  const { context, page } = await openPage(`${name}'s`);
  await page.goto(url);
  await page.fill("#name", name);
  await page.click("#connect");
  await page.waitForSelector('#status[data-state="open"]');
  log(`${name} joined: ${await page.textContent("#status")}`);
  return { name, context, page };
}

async function say(user, text) {
  await user.page.fill("#message", text);
  await user.page.click("#send");
  log(`${user.name} said ${JSON.stringify(text)}`);
}

/** Wait until `user`'s message list has the line `line`. */
async function sees(user, line) {
  try {
    await user.page.waitForFunction(
      (want) => [...document.querySelectorAll("#messages li")].some((li) => li.textContent === want),
      line,
      { timeout: WAIT_MS },
    );
  } catch (e) {
    const lines = await user.page.$$eval("#messages li", (lis) => lis.map((li) => li.textContent)).catch(() => []);
    throw new Error(`${user.name} never saw ${JSON.stringify(line)}; saw ${JSON.stringify(lines)}`);
  }
  log(`${user.name} saw ${JSON.stringify(line)}`);
}

// ---- the test ---------------------------------------------------------------------------

async function chat() {
  const [natsPort, httpPort, monitorPort] = await freePorts(3);
  const natsUrl = `nats://${HOST}:${natsPort}`;
  const gatewayUrl = `http://${HOST}:${httpPort}`;
  const monitorUrl = `http://${HOST}:${monitorPort}`;

  startBin("natsu", ["-a", HOST, "-p", String(natsPort), "--cores", "2"]);
  await waitFor(`natsu on port ${natsPort}`, () => listening(natsPort));
  startBin("natsu-gateway", [
    "--listen", `${HOST}:${httpPort}`, "--server", natsUrl, "--http_port", String(monitorPort), "--cores", "2",
  ]);
  await waitFor("the gateway's /healthz", async () => (await httpGet(`${monitorUrl}/healthz`)).status === 200);
  startBin("natsu-chat-demo", ["--server", natsUrl]);
  await waitFor("the chat page through the gateway", async () => (await httpGet(`${gatewayUrl}/`)).status === 200);

  const page = await httpGet(`${gatewayUrl}/`);
  check(page.type.startsWith("text/html"), `GET / answered ${page.type}, not text/html`);
  check(page.body.includes('id="messages"'), "GET / is not the chat page");
  const plain = await httpGet(`${gatewayUrl}/chat/alice`);
  check(plain.status === 400 && plain.type.startsWith("application/json"),
    `GET /chat/alice without an upgrade answered ${plain.status} ${plain.type}: ${plain.body}`);
  log(`GET / is the page; GET /chat/alice without an upgrade is 400 ${plain.body}`);

  const browser = await launchChromium();
  log(`Chromium ${browser.version()}`);

  const alice = await join(`${gatewayUrl}/`, "alice");
  // Sent by the service while it accepted the socket: the gateway kept it for the browser.
  await sees(alice, "* alice joined");
  const bob = await join(`${gatewayUrl}/`, "bob");
  await sees(alice, "* bob joined");
  await sees(bob, "* bob joined");

  await say(bob, "hello from bob");
  await sees(alice, "bob: hello from bob");
  await sees(bob, "bob: hello from bob");
  await say(alice, "hi bob, alice here");
  await sees(bob, "alice: hi bob, alice here");
  await sees(alice, "alice: hi bob, alice here");
  check((await metric(monitorUrl, "natsu_gateway_websockets_open")) === 2, "the gateway does not count 2 open WebSockets");

  // The browser goes away without a word from the page: only the gateway can tell.
  await bob.context.close();
  log("closed bob's browser context");
  await sees(alice, "* bob left");
  await waitFor("the gateway to count 1 open WebSocket", async () => (await metric(monitorUrl, "natsu_gateway_websockets_open")) === 1);

  // The room forgot bob: alice still talks to herself.
  await say(alice, "anyone?");
  await sees(alice, "alice: anyone?");
  const chat = children.find((p) => p.name === "natsu-chat-demo").output.join("");
  check(/alice joined/.test(chat) && /bob joined/.test(chat) && /bob left/.test(chat),
    `natsu-chat-demo did not log the joins and the leave:\n${chat}`);
  await alice.context.close();
}

await run(chat, { passed: "chat in headless Chromium through natsu-gateway" });
