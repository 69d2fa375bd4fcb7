// The broker's websocket listener in a real browser, with the official client nats.ws
// (from npm; its ESM bundle) in headless Chromium.
//
//   cargo build --release --bin natsu
//   cd tests/browser && npm ci && node natsws.test.mjs
//   NATSU_BIN=/usr/sbin/nats-server node natsws.test.mjs      # the same against the reference
//
// Starts the broker ($NATSU_BIN, default target/release/natsu, or $CARGO_TARGET_DIR/release)
// with a config file holding a `websocket { listen, no_tls: true }` block, on ports picked
// free on 127.0.0.1, and a tiny HTTP server on another free port that serves a page loading
// nats.ws's ESM bundle. The page, driven by playwright-core:
//   - connects over ws:// and sees the server's INFO (headers on);
//   - publishes messages of many sizes (0 B to 200 KB, across every WebSocket length
//     encoding) to its own subscription and gets them back intact and in order, headers too;
//   - receives in order what a plain TCP client on the broker publishes, and the TCP client
//     receives in order what the page publishes;
//   - makes requests to a responder that is not in the browser (a raw TCP NATS client in
//     this process speaking the text protocol: SUB, then PUB/HPUB to each MSG/HMSG's reply
//     subject), sequential and concurrent, with headers both ways; and gets no_responders
//     (503) for a subject nobody serves;
//   - survives a broker restart: the broker is SIGKILLed, the page sees the disconnect, the
//     broker starts again on the same ports, the page reconnects by itself, and a
//     subscription made before the restart receives again (and requests are answered).
// Exit code 0 when all of it held, 1 otherwise; every process started here is stopped by
// its PID, on failure too.
//
// Chromium is Debian's (/usr/bin/chromium, or $CHROMIUM); playwright-core never downloads
// one. Environment: NATSU_BIN, CHROMIUM, NATSU_BROWSER_TEST_TIMEOUT (seconds, the whole
// run; default 120).

import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";

import {
  HERE, HOST, RELEASE_DIR, WAIT_MS, check, freePorts, launchChromium, listening, log, openPage, run, start, stop,
  waitFor,
} from "./harness.mjs";

const BROKER = process.env.NATSU_BIN || path.join(RELEASE_DIR, "natsu");
const NATS_WS_BUNDLE = path.join(HERE, "node_modules", "nats.ws", "esm", "nats.js");

// ---- the broker -------------------------------------------------------------------------

/** Start the broker and wait until both its NATS and its websocket port accept. */
async function brokerUp(conf, clientPort, wsPort) {
  const proc = start(BROKER, ["-c", conf]);
  await waitFor(`the broker to listen on ports ${clientPort} and ${wsPort}`,
    async () => (await listening(clientPort)) && (await listening(wsPort)));
  return proc;
}

// ---- a raw TCP NATS client: the broker-side party ---------------------------------------

/**
 * A NATS client over plain TCP that speaks the text protocol itself: CONNECT, SUB, PUB,
 * HPUB, PING/PONG, and MSG/HMSG in. Its subscriptions are sent again on each connect().
 */
class RawClient {
  constructor(name, port) {
    this.name = name;
    this.port = port;
    this.subs = new Map(); // sid -> { subject, handler }
    this.nextSid = 1;
    this.errors = [];
    this.sock = null;
    this.closed = true;
  }

  /** Connect, send CONNECT and every subscription, and wait for the PONG. */
  async connect() {
    this.sock?.destroy();
    this.buf = Buffer.alloc(0);
    this.pongs = [];
    this.info = null;
    const sock = net.connect({ host: HOST, port: this.port });
    this.sock = sock;
    this.closed = false;
    let gotInfo;
    const infoSeen = new Promise((resolve, reject) => {
      gotInfo = resolve;
      sock.once("close", () => reject(new Error(`${this.name}: closed before INFO`)));
      setTimeout(() => reject(new Error(`${this.name}: no INFO in ${WAIT_MS} ms`)), WAIT_MS).unref();
    });
    infoSeen.catch(() => {});
    sock.on("data", (chunk) => {
      this.buf = Buffer.concat([this.buf, chunk]);
      try {
        this.parse();
      } catch (e) {
        this.errors.push(`parse: ${e.message}`);
        sock.destroy();
      }
      if (this.info !== null) {
        gotInfo();
      }
    });
    sock.on("error", (e) => this.errors.push(`socket: ${e.message}`));
    sock.on("close", () => {
      if (this.sock !== sock) {
        return; // an earlier connection's late close
      }
      this.closed = true;
      for (const p of this.pongs.splice(0)) {
        p.reject(new Error(`${this.name}: connection closed`));
      }
    });
    await infoSeen;
    const connect = {
      verbose: false, pedantic: false, tls_required: false, name: this.name, lang: "node-raw",
      version: "0.0.0", protocol: 1, headers: true, no_responders: true,
    };
    let out = `CONNECT ${JSON.stringify(connect)}\r\n`;
    for (const [sid, s] of this.subs) {
      out += `SUB ${s.subject} ${sid}\r\n`;
    }
    sock.write(out);
    await this.flush();
  }

  parse() {
    for (;;) {
      const eol = this.buf.indexOf("\r\n");
      if (eol < 0) {
        return;
      }
      const line = this.buf.subarray(0, eol).toString();
      const [op, ...args] = line.split(/[ \t]+/);
      switch (op.toUpperCase()) {
        case "INFO":
          this.info = JSON.parse(line.slice(5));
          break;
        case "PING":
          this.sock.write("PONG\r\n");
          break;
        case "PONG":
          this.pongs.shift()?.resolve();
          break;
        case "+OK":
          break;
        case "-ERR":
          this.errors.push(line);
          break;
        case "MSG":
        case "HMSG": {
          const headers = op.toUpperCase() === "HMSG";
          // MSG subject sid [reply] size; HMSG subject sid [reply] hdr_size total_size
          const n = headers ? 5 : 4;
          check(args.length === n || args.length === n - 1, `${this.name}: bad ${line}`);
          const [subject, sid] = args;
          const reply = args.length === n ? args[2] : "";
          const total = Number(args[args.length - 1]);
          const hdrLen = headers ? Number(args[args.length - 2]) : 0;
          if (this.buf.length < eol + 2 + total + 2) {
            return; // the payload is not all here yet
          }
          const body = this.buf.subarray(eol + 2, eol + 2 + total);
          const msg = {
            subject, sid, reply,
            headers: headers ? body.subarray(0, hdrLen).toString() : null,
            data: Buffer.from(body.subarray(hdrLen)),
          };
          this.buf = this.buf.subarray(eol + 2 + total + 2);
          this.subs.get(sid)?.handler(msg);
          continue;
        }
        default:
          this.errors.push(`unexpected: ${line}`);
      }
      this.buf = this.buf.subarray(eol + 2);
    }
  }

  sub(subject, handler) {
    const sid = String(this.nextSid++);
    this.subs.set(sid, { subject, handler });
    this.sock.write(`SUB ${subject} ${sid}\r\n`);
  }

  pub(subject, data, reply = "") {
    const payload = Buffer.from(data);
    this.sock.write(Buffer.concat([
      Buffer.from(`PUB ${subject} ${reply ? `${reply} ` : ""}${payload.length}\r\n`), payload, Buffer.from("\r\n"),
    ]));
  }

  hpub(subject, headers, data, reply = "") {
    const hdr = Buffer.from(headers);
    const payload = Buffer.from(data);
    this.sock.write(Buffer.concat([
      Buffer.from(`HPUB ${subject} ${reply ? `${reply} ` : ""}${hdr.length} ${hdr.length + payload.length}\r\n`),
      hdr, payload, Buffer.from("\r\n"),
    ]));
  }

  /** A PING/PONG round trip: everything sent before it has been processed by the broker. */
  flush(ms = WAIT_MS) {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${this.name}: no PONG in ${ms} ms`)), ms);
      this.pongs.push({
        resolve: () => (clearTimeout(t), resolve()),
        reject: (e) => (clearTimeout(t), reject(e)),
      });
      this.sock.write("PING\r\n");
    });
  }

  close() {
    this.sock?.destroy();
  }
}

/** Header value from a raw "NATS/1.0\r\nKey: value\r\n\r\n" block. */
function headerValue(block, key) {
  for (const line of block.split("\r\n").slice(1)) {
    const i = line.indexOf(":");
    if (i > 0 && line.slice(0, i).trim().toLowerCase() === key.toLowerCase()) {
      return line.slice(i + 1).trim();
    }
  }
  return undefined;
}

// ---- the page ---------------------------------------------------------------------------

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>nats.ws in the browser</title></head>
<body><p id="state">loading nats.ws</p>
<script type="module">
import * as nats from "/nats.js";
window.nats = nats;
window.natsLoaded = true;
document.getElementById("state").textContent = "nats.ws loaded";
</script></body></html>
`;

/** Serve the page and nats.ws's bundle on a free loopback port. */
function servePage(port) {
  const bundle = readFileSync(NATS_WS_BUNDLE);
  const server = http.createServer((req, res) => {
    if (req.url === "/" || req.url === "/index.html") {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      res.end(PAGE);
    } else if (req.url === "/nats.js") {
      res.writeHead(200, { "content-type": "text/javascript; charset=utf-8" });
      res.end(bundle);
    } else if (req.url === "/favicon.ico") {
      res.writeHead(204);
      res.end();
    } else {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("not found\n");
    }
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, HOST, () => resolve(server));
  });
}

// ---- the test ---------------------------------------------------------------------------

let httpServer = null;
const rawClients = [];
let tmpDir = null;

async function natsws() {
  check(existsSync(BROKER), `${BROKER} is missing: run cargo build --release first, or set NATSU_BIN`);
  check(existsSync(NATS_WS_BUNDLE), `${NATS_WS_BUNDLE} is missing: run npm ci in tests/browser`);
  const nwsVersion = JSON.parse(readFileSync(path.join(HERE, "node_modules", "nats.ws", "package.json"))).version;
  const [clientPort, wsPort, httpPort] = await freePorts(3);
  tmpDir = mkdtempSync(path.join(os.tmpdir(), "natsws-test-"));
  const conf = path.join(tmpDir, "broker.conf");
  writeFileSync(conf, `# written by tests/browser/natsws.test.mjs
listen: ${HOST}:${clientPort}
websocket {
  listen: "${HOST}:${wsPort}"
  no_tls: true
}
`);
  let broker = await brokerUp(conf, clientPort, wsPort);
  const wsUrl = `ws://${HOST}:${wsPort}`;

  // The broker-side parties: a responder and a plain publisher/subscriber.
  const responder = new RawClient("raw-responder", clientPort);
  rawClients.push(responder);
  await responder.connect();
  log(`raw TCP client connected: ${responder.info.server_name ?? responder.info.server_id} ${responder.info.version}`);
  let requestsSeen = 0;
  responder.sub("svc.echo", (m) => {
    requestsSeen++;
    if (!m.reply) {
      return;
    }
    const echo = m.headers === null ? undefined : headerValue(m.headers, "X-Test");
    const data = Buffer.concat([Buffer.from("echo:"), m.data]);
    if (echo !== undefined) {
      responder.hpub(m.reply, `NATS/1.0\r\nX-Echo: ${echo}\r\nX-Responder: raw\r\n\r\n`, data);
    } else {
      responder.pub(m.reply, data);
    }
  });
  const peer = new RawClient("raw-peer", clientPort);
  rawClients.push(peer);
  await peer.connect();
  const fromBrowser = [];
  peer.sub("browser.out", (m) => fromBrowser.push({ data: m.data.toString(), headers: m.headers }));
  await Promise.all([responder.flush(), peer.flush()]);

  httpServer = await servePage(httpPort);
  const browser = await launchChromium();
  log(`Chromium ${browser.version()}, nats.ws ${nwsVersion}, broker ${BROKER}`);
  const { context, page, errors: pageErrors } = await openPage("page");
  await page.goto(`http://${HOST}:${httpPort}/`);
  await page.waitForFunction(() => window.natsLoaded === true);

  // Connect; keep every status event; `collect` subscribes and keeps what arrives.
  const info = await page.evaluate(async ({ url, waitMs }) => {
    const { connect, StringCodec } = window.nats;
    window.sc = StringCodec();
    window.statuses = [];
    window.received = {};
    window.nc = await connect({
      servers: url, name: "natsws-test", timeout: waitMs,
      reconnect: true, maxReconnectAttempts: -1, reconnectTimeWait: 200, reconnectJitter: 50,
      pingInterval: 60_000,
    });
    (async () => {
      for await (const s of window.nc.status()) {
        window.statuses.push(s.type);
      }
    })();
    window.collect = (subject) => {
      const got = (window.received[subject] = []);
      window.nc.subscribe(subject, {
        callback: (err, m) => {
          got.push(err ? { error: String(err) } : {
            data: window.sc.decode(m.data), size: m.data.length,
            sum: m.data.reduce((a, b) => (a * 31 + b) >>> 0, 7),
            headers: m.headers ? Object.fromEntries([...m.headers.keys()].map((k) => [k, m.headers.get(k)])) : null,
          });
        },
      });
    };
    return { ...window.nc.info, connected: window.nc.getServer() };
  }, { url: wsUrl, waitMs: WAIT_MS });
  log(`the page connected to ${info.connected}: server ${info.server_name ?? info.server_id} ${info.version}, `
    + `proto ${info.proto}, headers ${info.headers}, max_payload ${info.max_payload}`);
  log(`the INFO the page got: ${JSON.stringify(info)}`);
  check(info.headers === true, `the INFO the page got does not say headers: ${JSON.stringify(info)}`);

  // 1. Its own messages back, intact and in order: every size class of a WebSocket frame
  //    length (7-bit, 16-bit, 64-bit) on both directions.
  const sizes = [0, 1, 100, 125, 126, 127, 1000, 65_000, 65_535, 65_536, 70_000, 200_000];
  const loop = await page.evaluate(async (sizes) => {
    const { nc } = window;
    window.collect("loop");
    await nc.flush();
    const sent = [];
    for (let i = 0; i < 40; i++) {
      const size = sizes[i % sizes.length];
      const data = new Uint8Array(size);
      for (let j = 0; j < size; j++) {
        data[j] = (i * 7 + j * 13) & 0xff;
      }
      nc.publish("loop", data);
      sent.push({ size, sum: data.reduce((a, b) => (a * 31 + b) >>> 0, 7) });
    }
    await nc.flush();
    const deadline = Date.now() + 10_000;
    while (window.received.loop.length < sent.length && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    return { sent, got: window.received.loop.map(({ size, sum }) => ({ size, sum })) };
  }, sizes);
  check(JSON.stringify(loop.got) === JSON.stringify(loop.sent),
    `the page's own 40 messages came back as ${JSON.stringify(loop.got.map((m) => m.size))} (sizes sent: ${JSON.stringify(loop.sent.map((m) => m.size))}), or with other bytes`);
  log(`40 messages of 0 B to 200 KB: published and received back in the page, bytes and order kept`);

  // 2. Headers through pub/sub in the page.
  const hdr = await page.evaluate(async () => {
    const { nc, sc } = window;
    window.collect("loop.h");
    await nc.flush();
    const h = window.nats.headers();
    h.set("X-One", "1");
    h.append("X-Many", "a");
    h.append("X-Many", "b");
    nc.publish("loop.h", sc.encode("with headers"), { headers: h });
    await nc.flush();
    const deadline = Date.now() + 10_000;
    while (window.received["loop.h"].length < 1 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    return window.received["loop.h"];
  });
  check(hdr.length === 1 && hdr[0].data === "with headers" && hdr[0].headers?.["X-One"] === "1" && hdr[0].headers?.["X-Many"] === "a",
    `a message with headers came back as ${JSON.stringify(hdr)}`);
  log(`a message with headers: received with them (${JSON.stringify(hdr[0].headers)})`);

  // 3. From the broker side into the page: a TCP client publishes, the page gets all in order.
  await page.evaluate(async () => {
    window.collect("browser.in");
    await window.nc.flush(); // the broker has the SUB now
  });
  for (let i = 0; i < 20; i++) {
    peer.pub("browser.in", `tcp-${i}`);
  }
  await peer.flush();
  await page.waitForFunction(() => window.received["browser.in"].length >= 20, null, { timeout: WAIT_MS })
    .catch(() => {});
  const inbound = await page.evaluate(() => window.received["browser.in"].map((m) => m.data));
  check(JSON.stringify(inbound) === JSON.stringify(Array.from({ length: 20 }, (_, i) => `tcp-${i}`)),
    `the page got ${JSON.stringify(inbound)} of tcp-0..tcp-19`);
  log("20 messages from a TCP client: received in the page in order");

  // 4. From the page to the broker side, with headers on the last one.
  await page.evaluate(async () => {
    const { nc, sc } = window;
    for (let i = 0; i < 19; i++) {
      nc.publish("browser.out", sc.encode(`ws-${i}`));
    }
    const h = window.nats.headers();
    h.set("X-From", "browser");
    nc.publish("browser.out", sc.encode("ws-19"), { headers: h });
    await nc.flush();
  });
  await waitFor("the TCP client to get the page's 20 messages", () => fromBrowser.length >= 20);
  check(JSON.stringify(fromBrowser.map((m) => m.data)) === JSON.stringify(Array.from({ length: 20 }, (_, i) => `ws-${i}`)),
    `the TCP client got ${JSON.stringify(fromBrowser.map((m) => m.data))} of ws-0..ws-19`);
  check(fromBrowser[18].headers === null && headerValue(fromBrowser[19].headers ?? "", "X-From") === "browser",
    `the headers reached the TCP client as ${JSON.stringify(fromBrowser.slice(18))}`);
  log("20 messages from the page: received by the TCP client in order, the last as HMSG with its header");

  // 5. Request/reply: the responder is the raw TCP client, not the page.
  const rr = await page.evaluate(async (waitMs) => {
    const { nc, sc } = window;
    const out = { sequential: [], concurrent: [] };
    for (let i = 0; i < 10; i++) {
      const m = await nc.request("svc.echo", sc.encode(`q${i}`), { timeout: waitMs });
      out.sequential.push(sc.decode(m.data));
    }
    const all = await Promise.all(Array.from({ length: 10 }, (_, i) =>
      nc.request("svc.echo", sc.encode(`c${i}`), { timeout: waitMs })));
    out.concurrent = all.map((m) => sc.decode(m.data));
    const h = window.nats.headers();
    h.set("X-Test", "abc-123");
    const m = await nc.request("svc.echo", sc.encode("hdr"), { timeout: waitMs, headers: h });
    out.withHeaders = {
      data: sc.decode(m.data), echo: m.headers?.get("X-Echo"), responder: m.headers?.get("X-Responder"),
    };
    try {
      await nc.request("svc.nobody", sc.encode("anyone?"), { timeout: waitMs });
      out.noResponders = "answered";
    } catch (e) {
      out.noResponders = e.code ?? String(e);
    }
    return out;
  }, WAIT_MS);
  check(JSON.stringify(rr.sequential) === JSON.stringify(Array.from({ length: 10 }, (_, i) => `echo:q${i}`)),
    `sequential requests were answered ${JSON.stringify(rr.sequential)}`);
  check(JSON.stringify(rr.concurrent) === JSON.stringify(Array.from({ length: 10 }, (_, i) => `echo:c${i}`)),
    `concurrent requests were answered ${JSON.stringify(rr.concurrent)}`);
  check(rr.withHeaders.data === "echo:hdr" && rr.withHeaders.echo === "abc-123" && rr.withHeaders.responder === "raw",
    `a request with headers was answered ${JSON.stringify(rr.withHeaders)}`);
  check(rr.noResponders === "503", `a request nobody serves ended with ${JSON.stringify(rr.noResponders)}, not 503 (no responders)`);
  log(`request/reply through the TCP responder: 10 sequential, 10 concurrent, one with headers both ways; no responders is 503 (${requestsSeen} requests seen)`);

  // 6. A broker restart: SIGKILL, the page notices, the broker comes back on the same ports,
  //    the page reconnects by itself and its subscription from before receives again.
  await page.evaluate(async () => {
    window.collect("after.restart");
    await window.nc.flush();
  });
  const statusesBefore = await page.evaluate(() => window.statuses.length);
  await stop(broker, "SIGKILL");
  log(`killed the broker (pid ${broker.child.pid}, SIGKILL)`);
  await page.waitForFunction((n) => window.statuses.slice(n).includes("disconnect"), statusesBefore, { timeout: WAIT_MS })
    .catch(async () => {
      throw new Error(`the page never saw a disconnect; its statuses: ${JSON.stringify(await page.evaluate(() => window.statuses))}`);
    });
  log("the page saw the disconnect");
  broker = await brokerUp(conf, clientPort, wsPort);
  await page.waitForFunction((n) => window.statuses.slice(n).includes("reconnect"), statusesBefore, { timeout: WAIT_MS })
    .catch(async () => {
      throw new Error(`the page never reconnected; its statuses: ${JSON.stringify(await page.evaluate(() => window.statuses))}`);
    });
  const statuses = await page.evaluate(async () => {
    await window.nc.flush(); // its SUBs, sent again on reconnect, are in the broker now
    return window.statuses;
  });
  log(`the page reconnected (statuses: ${statuses.join(", ")})`);
  await waitFor("the raw TCP clients to reconnect", async () => {
    await responder.connect();
    await peer.connect();
    return true;
  });
  for (let i = 0; i < 5; i++) {
    peer.pub("after.restart", `again-${i}`);
  }
  await peer.flush();
  await page.waitForFunction(() => window.received["after.restart"].length >= 5, null, { timeout: WAIT_MS })
    .catch(() => {});
  const again = await page.evaluate(() => window.received["after.restart"].map((m) => m.data));
  check(JSON.stringify(again) === JSON.stringify(Array.from({ length: 5 }, (_, i) => `again-${i}`)),
    `after the restart, the subscription made before it got ${JSON.stringify(again)} of again-0..again-4`);
  const after = await page.evaluate(async (waitMs) => {
    const { nc, sc } = window;
    const m = await nc.request("svc.echo", sc.encode("back"), { timeout: waitMs });
    nc.publish("loop", sc.encode("loop again"));
    await nc.flush();
    const deadline = Date.now() + 5000;
    while (!window.received.loop.some((m) => m.data === "loop again") && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    return { reply: sc.decode(m.data), loop: window.received.loop.some((m) => m.data === "loop again") };
  }, WAIT_MS);
  check(after.reply === "echo:back" && after.loop, `after the restart: ${JSON.stringify(after)}`);
  log("after the restart: the old subscriptions receive again (from TCP and from the page), a request is answered");

  // 7. A clean close.
  const closed = await page.evaluate(async () => {
    await window.nc.close();
    return window.nc.isClosed();
  });
  check(closed, "the page's connection did not close");
  check(pageErrors.length === 0, `the page had errors: ${pageErrors.join("; ")}`);
  for (const c of rawClients) {
    check(c.errors.filter((e) => !e.startsWith("socket:")).length === 0, `${c.name} saw: ${c.errors.join("; ")}`);
  }
  await context.close();
}

async function cleanUp() {
  for (const c of rawClients) {
    c.close();
  }
  if (httpServer) {
    httpServer.closeAllConnections?.();
    httpServer.close();
    httpServer = null;
  }
  if (tmpDir) {
    rmSync(tmpDir, { recursive: true, force: true });
  }
}

await run(natsws, {
  passed: `nats.ws in headless Chromium against ${path.basename(BROKER)}'s websocket listener`,
  cleanUp,
});
