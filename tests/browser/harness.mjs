// What the browser tests (chat.test.mjs, natsws.test.mjs) share: child processes started
// with their output kept and stopped by their PID, waiting with a deadline, free loopback
// ports, headless Chromium, and the run/finish frame (a deadline for the whole run, SIGINT
// and SIGTERM, the failure report, the clean-up, the exit code).
//
// Environment: CARGO_TARGET_DIR (where target/release is), CHROMIUM (default
// /usr/bin/chromium; playwright-core never downloads one), NATSU_BROWSER_TEST_TIMEOUT
// (seconds, the whole run; default 120).

import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

/** tests/browser, and the repository's root. */
export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, "../..");
/** Where cargo build --release puts the binaries. */
export const RELEASE_DIR = path.join(process.env.CARGO_TARGET_DIR || path.join(REPO, "target"), "release");
export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
export const OVERALL_MS = 1000 * Number(process.env.NATSU_BROWSER_TEST_TIMEOUT || 120);
/** How long any one thing may take to happen (a page load, a message, a reconnect). */
export const WAIT_MS = 15_000;
export const HOST = "127.0.0.1";

const started = Date.now();
export const log = (line) => console.log(`[${((Date.now() - started) / 1000).toFixed(2)}s] ${line}`);
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export function check(ok, message) {
  if (!ok) {
    throw new Error(message);
  }
}

// ---- processes --------------------------------------------------------------------------

/** Every process started here, with its output kept for a failure report. */
export const children = [];

/**
 * Start `file` with `args`, its stdout and stderr kept. The returned record's `exited` is
 * null while it runs, then its exit code or signal; `stopped` is set once stop() signalled it.
 */
export function start(file, args, name = path.basename(file)) {
  const child = spawn(file, args, { stdio: ["ignore", "pipe", "pipe"] });
  const proc = { name, child, output: [], exited: null, stopped: false };
  const keep = (chunk) => proc.output.push(chunk.toString());
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  child.on("exit", (code, signal) => (proc.exited = signal ?? code));
  child.on("error", (e) => (proc.exited = `spawn error: ${e.message}`));
  children.push(proc);
  log(`started ${name} (pid ${child.pid}): ${file} ${args.join(" ")}`);
  return proc;
}

/** Signal one process by its PID and wait (5 s at most, then SIGKILL and 3 s) until it is gone. */
export async function stop(proc, signal) {
  if (proc.exited !== null || proc.child.pid === undefined) {
    return;
  }
  proc.stopped = true;
  proc.child.kill(signal);
  const deadline = Date.now() + 5000;
  while (proc.exited === null && Date.now() < deadline) {
    await sleep(20);
  }
  if (proc.exited === null) {
    log(`${proc.name} (pid ${proc.child.pid}) ignored ${signal}: SIGKILL`);
    proc.child.kill("SIGKILL");
    while (proc.exited === null && Date.now() < deadline + 3000) {
      await sleep(20);
    }
  }
}

/** SIGTERM every child still running, all at once. */
export async function stopAll() {
  await Promise.all(children.map((p) => stop(p, "SIGTERM")));
}

export function dumpOutput() {
  for (const p of children) {
    console.log(`---- ${p.name} (pid ${p.child.pid}, exit ${p.exited ?? "still running"}) ----`);
    process.stdout.write(p.output.join("") || "(no output)\n");
  }
}

// ---- waiting ----------------------------------------------------------------------------

/**
 * Retry `probe` (true when ready) every 50 ms for at most `ms`; a child that exits without
 * having been stopped on purpose fails it at once.
 */
export async function waitFor(what, probe, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const dead = children.find((p) => p.exited !== null && !p.stopped);
    if (dead) {
      throw new Error(`${dead.name} exited (${dead.exited}) while waiting for ${what}`);
    }
    try {
      if (await probe()) {
        return;
      }
    } catch {
      // not yet
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    }
    await sleep(50);
  }
}

let nextPort = 0;

/** One port below the kernel's ephemeral range that can be listened on now, or null. */
function tryListen(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once("error", () => resolve(null));
    s.listen(port, HOST, () => resolve(s));
  });
}

/**
 * Ports free now, all different (held together, then let go). Not the kernel's pick
 * (listen(0)): that comes from the ephemeral range, which every outgoing connection of the
 * tests running in parallel also draws from, so one could take the port before the server
 * binds it. Taken below that range instead, from a start that differs per process.
 */
export async function freePorts(n) {
  let ephemeralLow = 32768;
  try {
    ephemeralLow = Number(fs.readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]) || 32768;
  } catch {
    // not Linux: keep the usual start of the range
  }
  const low = 10000;
  const span = Math.min(Math.max(ephemeralLow, 12000), 65000) - low;
  const start = (process.pid * 7919) % span;
  const servers = [];
  for (let tried = 0; servers.length < n && tried < span; tried++) {
    const s = await tryListen(low + ((start + nextPort++) % span));
    if (s) servers.push(s);
  }
  if (servers.length < n) throw new Error(`no ${n} free loopback ports below ${low + span}`);
  const ports = servers.map((s) => s.address().port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

/** Whether something accepts TCP connections on `port`. */
export function listening(port) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: HOST, port });
    sock.setTimeout(1000);
    sock.once("connect", () => (sock.destroy(), resolve(true)));
    sock.once("error", () => resolve(false));
    sock.once("timeout", () => (sock.destroy(), resolve(false)));
  });
}

// ---- the browser ------------------------------------------------------------------------

let browser = null;

/** Headless Chromium, closed by run()'s clean-up. */
export async function launchChromium() {
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
  return browser;
}

/**
 * A page in a browser context of its own, its console and errors logged under `who`
 * ("alice's", "page"); `errors` keeps the messages of its uncaught errors.
 */
export async function openPage(who) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  const errors = [];
  page.on("console", (m) => log(`${who} console: ${m.text()}`));
  page.on("pageerror", (e) => (errors.push(e.message), log(`${who} page error: ${e.message}`)));
  return { context, page, errors };
}

async function closeBrowser() {
  if (browser) {
    const b = browser;
    browser = null;
    // playwright also kills the browser it launched when this process exits.
    await Promise.race([b.close().catch(() => {}), sleep(5000)]);
  }
}

// ---- the frame --------------------------------------------------------------------------

/**
 * Run the test `body` and exit: 0 when it returned, 1 when it threw, took over OVERALL_MS or
 * was stopped by SIGINT/SIGTERM (then with the children's output). Before the exit, the
 * browser is closed, `cleanUp` runs and every child is stopped by its PID.
 */
export async function run(body, { passed, cleanUp = async () => {} }) {
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
    await cleanUp();
    await stopAll();
    log(code === 0 ? `PASSED: ${passed}` : "FAILED");
    process.exit(code);
  }

  const overall = setTimeout(() => finish(1, new Error(`the whole test took over ${OVERALL_MS / 1000} s`)), OVERALL_MS);
  for (const signal of ["SIGINT", "SIGTERM"]) {
    process.on(signal, () => finish(1, new Error(`stopped by ${signal}`)));
  }
  try {
    await body();
    clearTimeout(overall);
    await finish(0);
  } catch (e) {
    await finish(1, e);
  }
}
