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

import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const BIN = path.join(process.env.CARGO_TARGET_DIR || path.join(REPO, "target"), "release");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const OVERALL_MS = 1000 * Number(process.env.NATSU_BROWSER_TEST_TIMEOUT || 120);
/** How long any one thing may take to happen (a page load, a line to show up). */
const WAIT_MS = 15_000;
const HOST = "127.0.0.1";

const started = Date.now();
const log = (line) => console.log(`[${((Date.now() - started) / 1000).toFixed(2)}s] ${line}`);

// ---- processes --------------------------------------------------------------------------

/** Every process started here, with its output kept for a failure report. */
const children = [];

function start(name, args) {
  const file = path.join(BIN, name);
  if (!existsSync(file)) {
    throw new Error(`${file} is missing: run cargo build --release first`);
  }
  const child = spawn(file, args, { stdio: ["ignore", "pipe", "pipe"] });
  const proc = { name, child, output: [], exited: null };
  const keep = (chunk) => proc.output.push(chunk.toString());
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  child.on("exit", (code, signal) => (proc.exited = signal ?? code));
  child.on("error", (e) => (proc.exited = `spawn error: ${e.message}`));
  children.push(proc);
  log(`started ${name} (pid ${child.pid}): ${args.join(" ")}`);
  return proc;
}

/** SIGTERM each child by its PID, SIGKILL what is still there 3 s later. */
async function stopAll() {
  const running = children.filter((p) => p.exited === null && p.child.pid !== undefined);
  for (const p of running) {
    p.child.kill("SIGTERM");
  }
  const deadline = Date.now() + 3000;
  while (running.some((p) => p.exited === null) && Date.now() < deadline) {
    await sleep(50);
  }
  for (const p of running.filter((p) => p.exited === null)) {
    log(`${p.name} (pid ${p.child.pid}) ignored SIGTERM: SIGKILL`);
    p.child.kill("SIGKILL");
  }
}

function dumpOutput() {
  for (const p of children) {
    console.log(`---- ${p.name} (pid ${p.child.pid}, exit ${p.exited ?? "still running"}) ----`);
    process.stdout.write(p.output.join("") || "(no output)\n");
  }
}

// ---- waiting ----------------------------------------------------------------------------

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Retry `probe` (true when ready) every 100 ms for at most `ms`; a child that exits fails it. */
async function waitFor(what, probe, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const dead = children.find((p) => p.exited !== null);
    if (dead) {
      throw new Error(`${dead.name} exited (${dead.exited}) while waiting for ${what}`);
    }
    try {
      if (await probe()) {
        return;
      }
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    }
    await sleep(100);
  }
}

/** Ports the kernel calls free now, all different (held together, then let go). */
async function freePorts(n) {
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise((resolve, reject) => {
      const s = net.createServer();
      s.once("error", reject);
      s.listen(0, HOST, () => resolve(s));
    })),
  );
  const ports = servers.map((s) => s.address().port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

/** Whether something accepts TCP connections on `port`. */
function listening(port) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: HOST, port });
    sock.setTimeout(1000);
    sock.once("connect", () => (sock.destroy(), resolve(true)));
    sock.once("error", () => resolve(false));
    sock.once("timeout", () => (sock.destroy(), resolve(false)));
  });
}

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

function check(ok, message) {
  if (!ok) {
    throw new Error(message);
  }
}

// ---- the browser side -------------------------------------------------------------------

/** A user: a browser context of its own with the chat page, joined as `name`. */
async function join(browser, url, name) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.on("console", (m) => log(`${name}'s console: ${m.text()}`));
  page.on("pageerror", (e) => log(`${name}'s page error: ${e.message}`));
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

let browser = null;

async function run() {
  const [natsPort, httpPort, monitorPort] = await freePorts(3);
  const natsUrl = `nats://${HOST}:${natsPort}`;
  const gatewayUrl = `http://${HOST}:${httpPort}`;
  const monitorUrl = `http://${HOST}:${monitorPort}`;

  start("natsu", ["-a", HOST, "-p", String(natsPort), "--cores", "2"]);
  await waitFor(`natsu on port ${natsPort}`, () => listening(natsPort));
  start("natsu-gateway", [
    "--listen", `${HOST}:${httpPort}`, "--server", natsUrl, "--http_port", String(monitorPort), "--cores", "2",
  ]);
  await waitFor("the gateway's /healthz", async () => (await httpGet(`${monitorUrl}/healthz`)).status === 200);
  start("natsu-chat-demo", ["--server", natsUrl]);
  await waitFor("the chat page through the gateway", async () => (await httpGet(`${gatewayUrl}/`)).status === 200);

  const page = await httpGet(`${gatewayUrl}/`);
  check(page.type.startsWith("text/html"), `GET / answered ${page.type}, not text/html`);
  check(page.body.includes('id="messages"'), "GET / is not the chat page");
  const plain = await httpGet(`${gatewayUrl}/chat/alice`);
  check(plain.status === 400 && plain.type.startsWith("application/json"),
    `GET /chat/alice without an upgrade answered ${plain.status} ${plain.type}: ${plain.body}`);
  log(`GET / is the page; GET /chat/alice without an upgrade is 400 ${plain.body}`);

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30_000,
    // playwright starts it with a fresh temporary profile (--user-data-dir) of its own.
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  log(`Chromium ${browser.version()}`);

  const alice = await join(browser, `${gatewayUrl}/`, "alice");
  // Sent by the service while it accepted the socket: the gateway kept it for the browser.
  await sees(alice, "* alice joined");
  const bob = await join(browser, `${gatewayUrl}/`, "bob");
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

async function closeBrowser() {
  if (browser) {
    const b = browser;
    browser = null;
    // playwright also kills the browser it launched when this process exits.
    await Promise.race([b.close().catch(() => {}), sleep(5000)]);
  }
}

let finishing = false;
async function finish(code, error) {
  if (finishing) {
    return;
  }
  finishing = true;
  if (error) {
    console.log(`FAILED: ${error.stack || error}`);
    dumpOutput();
  }
  await closeBrowser();
  await stopAll();
  log(code === 0 ? "PASSED: chat in headless Chromium through natsu-gateway" : "FAILED");
  process.exit(code);
}

const overall = setTimeout(() => finish(1, new Error(`the whole test took over ${OVERALL_MS / 1000} s`)), OVERALL_MS);
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => finish(1, new Error(`stopped by ${signal}`)));
}

try {
  await run();
  clearTimeout(overall);
  await finish(0);
} catch (e) {
  await finish(1, e);
}
