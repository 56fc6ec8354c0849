/**
 * One node of tests/mesh_netns_test.ts, run as its own process (inside a network namespace):
 * an {@link InterconnectNode} driven by JSON lines on stdin, reporting JSON lines on stdout.
 *
 * It keeps a session with every wanted peer (connect when there is none, `resume()` when the
 * connection broke) and runs an acknowledged stream of numbered messages in each direction of
 * every session, so that the test can tell delivered data from data reported as not delivered:
 *
 * - frames: `type u8, seq u32, length u32, payload`; DATA carries message `seq`, ACK the highest
 *   message received in order, HELLO (first frame on every connection) the same plus the
 *   sender's view of the session's virtual ids;
 * - a message is delivered once acknowledged; when a connection breaks, what was written but not
 *   acknowledged is reported (`unconfirmed`) and sent again after the peer's HELLO on the
 *   continued connection; when the session ends (replaced by a new one, or forgotten), what is
 *   still unacknowledged is reported as not delivered (`undelivered`), as YDB drops the queue of
 *   a terminated session;
 * - the receiver accepts only message `last + 1` with the expected contents; anything else is a
 *   `violation` line, printed at once (so even a process killed later has reported it).
 *
 * Commands: `mesh` (want every peer), `forget` (close the session with `peer`), `drain` (stop
 * writing new messages), `state`, `report`, `quit`. Stdin EOF also quits.
 * @module
 */
import { configure, type LogLevel, type LogRecord } from "@logtape/logtape";
import { InterconnectNode, type Session } from "../../lib/node/node.ts";
import { handshakeLine } from "../../lib/cli/lines.ts";
import type { NodeConfig } from "../../lib/node/config.ts";
import { ACK, DATA, frame, HEADER, HELLO, payloadOf } from "./mesh_frames.ts";

const TICK_MS = 20;
/** A connection that brings nothing (not even a heartbeat ACK) for this long is broken. */
const IDLE_MS = 1500;
const HEARTBEAT_MS = 100;
/** Unacknowledged messages per stream. */
const WINDOW = 200;
/** New messages per stream and tick. */
const PER_TICK = 3;
const MAX_CHUNK = 64 * 1024;
const MAX_FRAME = 1 << 20;

interface Options {
  config: NodeConfig;
  workers: number;
  /** When set, the library's log records at this level and above become `log` lines. */
  logLevel?: LogLevel;
}

/** One direction pair of numbered messages, for the life of one session (one vid pair). */
interface Stream {
  readonly peer: number;
  readonly self: string;
  readonly peerVid: string;
  readonly direction: "incoming" | "outgoing";
  /** Messages 1..written were created (handed to some connection or queued for it). */
  written: number;
  acked: number;
  /** Next message to put on the current connection. */
  sendPtr: number;
  /** Sent on a connection that broke before they were acknowledged (then sent again). */
  unconfirmed: number;
  resent: number;
  undelivered: number;
  ended: boolean;
  txBytes: number;
  rxHigh: number;
  rxBytes: number;
  duplicates: number;
  violations: number;
  connections: number;
}

interface Conn {
  readonly readable: ReadableStream<Uint8Array>;
  readonly writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly stream: Stream;
  buf: Uint8Array;
  stopped: boolean;
  broken: boolean;
  peerHello: boolean;
  writing: boolean;
  lastHeard: number;
  lastSent: number;
  ackSent: number;
}

interface Link {
  readonly peer: number;
  session: Session | undefined;
  stream: Stream | undefined;
  conn: Conn | undefined;
  /** A connect() or resume() is in flight. */
  busy: boolean;
  retryAt: number;
}

const out = (o: Record<string, unknown>) => console.log(JSON.stringify(o));

const options: Options = JSON.parse(Deno.args[0]);
const selfId = options.config.nodeId;
const peers = options.config.nodes.map((n) => n.nodeId).filter((id) => id !== selfId);
const links = new Map<number, Link>();
for (const peer of peers) {
  links.set(peer, {
    peer,
    session: undefined,
    stream: undefined,
    conn: undefined,
    busy: false,
    retryAt: 0,
  });
}
const streams: Stream[] = [];
let wanted = false;
let draining = false;

globalThis.addEventListener("unhandledrejection", (e) => {
  e.preventDefault();
  out({ event: "error", where: "unhandledrejection", error: String(e.reason?.stack ?? e.reason) });
});

if (options.logLevel) {
  await configure({
    reset: true,
    sinks: {
      lines: (r: LogRecord) =>
        out({
          event: "log",
          at: r.timestamp,
          level: r.level,
          category: r.category.join("."),
          message: r.message.map((m) => typeof m === "string" ? m : JSON.stringify(m)).join(""),
        }),
    },
    loggers: [
      { category: ["ic-handshake"], lowestLevel: options.logLevel, sinks: ["lines"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["lines"] },
    ],
  });
}

const node = InterconnectNode.start(options.config, { workers: options.workers });
node.onHandshake((e) => {
  const line = JSON.parse(handshakeLine(e));
  out({ ...line, at: Date.now() });
  if (e.ok) reconcile(e.peerNodeId);
});
node.onSession((s) => {
  out({
    event: "session",
    peer: s.peerNodeId,
    direction: s.direction,
    self: s.selfVirtualId.toString(),
    peerVid: s.peerVirtualId.toString(),
    program: s.program
      ? { pid: s.program.pid.toString(), startTime: s.program.startTime.toString() }
      : null,
  });
  reconcile(s.peerNodeId);
});
await node.ready();
out({
  event: "ready",
  nodeId: selfId,
  pid: Deno.pid,
  listen: node.listenAddress,
});

// ---------------------------------------------------------------------------------------------
// Frames

function samePayload(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const b = new Uint8Array(total);
  let o = 0;
  for (const p of parts) {
    b.set(p, o);
    o += p.length;
  }
  return b;
}

// ---------------------------------------------------------------------------------------------
// Sessions and connections

function violation(link: Link, what: string): void {
  if (link.stream) link.stream.violations++;
  out({ event: "violation", peer: link.peer, what, self: link.stream?.self });
}

function endStream(link: Link, why: string): void {
  const s = link.stream;
  if (s && !s.ended) {
    s.ended = true;
    s.undelivered = s.written - s.acked;
    out({
      event: "stream_end",
      peer: link.peer,
      self: s.self,
      peerVid: s.peerVid,
      why,
      written: s.written,
      acked: s.acked,
      undelivered: s.undelivered,
    });
  }
  if (link.conn) stopConn(link.conn);
  link.conn = undefined;
  link.stream = undefined;
  link.session = undefined;
}

function stopConn(c: Conn): void {
  c.stopped = true;
  c.writer.releaseLock();
}

/** Brings the link in line with the node's view: session replaced, connection replaced. */
function reconcile(peer: number): void {
  const link = links.get(peer);
  if (!link) return;
  const cur = node.session(peer);
  if (cur !== link.session) {
    endStream(link, cur ? "replaced" : "session gone");
    if (cur) {
      link.session = cur;
      link.stream = {
        peer,
        self: cur.selfVirtualId.toString(),
        peerVid: cur.peerVirtualId.toString(),
        direction: cur.direction,
        written: 0,
        acked: 0,
        sendPtr: 1,
        unconfirmed: 0,
        resent: 0,
        undelivered: 0,
        ended: false,
        txBytes: 0,
        rxHigh: 0,
        rxBytes: 0,
        duplicates: 0,
        violations: 0,
        connections: 0,
      };
      streams.push(link.stream);
    }
  }
  if (!link.session || !link.stream) return;
  const readable = link.session.readable;
  if (link.conn && link.conn.readable === readable) return;
  // A new connection of this session: the first one, or a continuation's.
  if (link.conn) stopConn(link.conn);
  const now = Date.now();
  const conn: Conn = {
    readable,
    writer: link.session.writable.getWriter(),
    stream: link.stream,
    buf: new Uint8Array(0),
    stopped: false,
    broken: false,
    peerHello: false,
    writing: false,
    lastHeard: now,
    lastSent: now,
    ackSent: link.stream.rxHigh,
  };
  link.conn = conn;
  link.stream.connections++;
  const hello = new TextEncoder().encode(`${link.stream.self} ${link.stream.peerVid}`);
  write(link, conn, frame(HELLO, link.stream.rxHigh, hello));
  readLoop(link, conn);
}

function markBroken(link: Link, conn: Conn, reason: string): void {
  if (conn.broken || conn.stopped) return;
  conn.broken = true;
  const s = conn.stream;
  const pending = s.sendPtr - 1 - s.acked;
  if (conn.peerHello && pending > 0) s.unconfirmed += pending;
  out({ event: "broken", peer: link.peer, reason, unconfirmed: conn.peerHello ? pending : 0 });
  link.retryAt = Math.max(link.retryAt, Date.now() + 50 + Math.random() * 200);
}

function write(link: Link, conn: Conn, chunk: Uint8Array): void {
  conn.writing = true;
  conn.lastSent = Date.now();
  conn.writer.write(chunk).then(
    () => {
      conn.writing = false;
    },
    (e) => {
      conn.writing = false;
      markBroken(link, conn, `write: ${e}`);
    },
  );
}

async function readLoop(link: Link, conn: Conn): Promise<void> {
  const reader = conn.readable.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (conn.stopped) break;
      if (done) {
        markBroken(link, conn, "end of stream");
        break;
      }
      conn.lastHeard = Date.now();
      onBytes(link, conn, value);
    }
  } catch (e) {
    if (!conn.stopped) markBroken(link, conn, `read: ${e}`);
  } finally {
    reader.releaseLock();
  }
}

function onBytes(link: Link, conn: Conn, chunk: Uint8Array): void {
  conn.buf = conn.buf.length === 0 ? chunk : concat([conn.buf, chunk]);
  while (conn.buf.length >= HEADER && !conn.stopped && !conn.broken) {
    const v = new DataView(conn.buf.buffer, conn.buf.byteOffset, conn.buf.byteLength);
    const type = v.getUint8(0);
    const seq = v.getUint32(1);
    const len = v.getUint32(5);
    if (len > MAX_FRAME) {
      violation(link, `bad frame length ${len}`);
      markBroken(link, conn, "bad frame");
      return;
    }
    if (conn.buf.length < HEADER + len) return;
    const payload = conn.buf.subarray(HEADER, HEADER + len);
    conn.buf = conn.buf.subarray(HEADER + len);
    onFrame(link, conn, type, seq, payload);
  }
}

function onFrame(link: Link, conn: Conn, type: number, seq: number, payload: Uint8Array): void {
  const s = conn.stream;
  switch (type) {
    case HELLO: {
      const [peerSelf, peerPeer] = new TextDecoder().decode(payload).split(" ");
      if (peerSelf !== s.peerVid || peerPeer !== s.self) {
        violation(
          link,
          `HELLO for session ${peerSelf} ${peerPeer}, ours is ${s.self} ${s.peerVid}`,
        );
      }
      if (conn.peerHello) violation(link, "second HELLO");
      if (seq < s.acked || seq > s.written) {
        violation(link, `HELLO ${seq} outside acked ${s.acked}..written ${s.written}`);
      }
      conn.peerHello = true;
      s.acked = Math.max(s.acked, seq);
      // Everything after what the peer has is sent again on this connection.
      if (s.sendPtr - 1 > s.acked) s.resent += s.sendPtr - 1 - s.acked;
      s.sendPtr = s.acked + 1;
      return;
    }
    case ACK:
      if (!conn.peerHello) violation(link, "ACK before HELLO");
      if (seq > s.written) violation(link, `ACK ${seq} beyond written ${s.written}`);
      s.acked = Math.max(s.acked, Math.min(seq, s.written));
      return;
    case DATA: {
      if (!conn.peerHello) violation(link, "DATA before HELLO");
      if (seq === s.rxHigh + 1) {
        if (!samePayload(payload, payloadOf(link.peer, selfId, seq))) {
          violation(link, `message ${seq}: wrong contents`);
          return;
        }
        s.rxHigh = seq;
        s.rxBytes += payload.length;
      } else if (seq <= s.rxHigh) {
        s.duplicates++;
      } else {
        violation(link, `gap: expected message ${s.rxHigh + 1}, got ${seq}`);
      }
      return;
    }
    default:
      violation(link, `unknown frame type ${type}`);
  }
}

// ---------------------------------------------------------------------------------------------
// The loop: reconnect, resume, send

function tick(): void {
  const now = Date.now();
  for (const link of links.values()) {
    reconcile(link.peer);
    const conn = link.conn;
    if (conn && !conn.broken && now - conn.lastHeard > IDLE_MS) {
      markBroken(link, conn, "idle");
    }
    if (!link.busy && now >= link.retryAt) {
      if (!link.session && wanted) {
        link.busy = true;
        node.connect(link.peer).then(
          () => {},
          (e) => out({ event: "connect_failed", peer: link.peer, error: String(e) }),
        ).finally(() => {
          link.busy = false;
          link.retryAt = Date.now() + 100 + Math.random() * 150;
          reconcile(link.peer);
        });
      } else if (
        link.session && conn?.broken && !link.session.closed &&
        link.session.readable === conn.readable
      ) {
        link.busy = true;
        link.session.resume().then(
          (s) => out({ event: "resumed", peer: link.peer, same: s === link.session }),
          (e) => out({ event: "resume_failed", peer: link.peer, error: String(e) }),
        ).finally(() => {
          link.busy = false;
          link.retryAt = Date.now() + 100 + Math.random() * 150;
          reconcile(link.peer);
        });
      }
    }
    if (conn && !conn.broken && !conn.stopped && !conn.writing) send(link, conn, now);
  }
}

function send(link: Link, conn: Conn, now: number): void {
  const s = conn.stream;
  const parts: Uint8Array[] = [];
  let bytes = 0;
  if (s.rxHigh !== conn.ackSent || now - conn.lastSent >= HEARTBEAT_MS) {
    parts.push(frame(ACK, s.rxHigh));
    conn.ackSent = s.rxHigh;
  }
  if (conn.peerHello) {
    if (!draining) {
      for (let i = 0; i < PER_TICK && s.written - s.acked < WINDOW; i++) s.written++;
    }
    while (s.sendPtr <= s.written && bytes < MAX_CHUNK) {
      const f = frame(DATA, s.sendPtr, payloadOf(selfId, link.peer, s.sendPtr));
      parts.push(f);
      bytes += f.length;
      s.txBytes += f.length - HEADER;
      s.sendPtr++;
    }
  }
  if (parts.length > 0) write(link, conn, parts.length === 1 ? parts[0] : concat(parts));
}

function peerState(link: Link) {
  const s = link.stream;
  if (!link.session || !s) return null;
  const p = link.session.program;
  return {
    self: s.self,
    peerVid: s.peerVid,
    direction: s.direction,
    program: p ? { pid: p.pid.toString(), startTime: p.startTime.toString() } : null,
    healthy: !!link.conn && link.conn.peerHello && !link.conn.broken,
    broken: !link.conn || link.conn.broken,
    written: s.written,
    acked: s.acked,
    rxHigh: s.rxHigh,
  };
}

function drained(): boolean {
  return draining &&
    [...links.values()].every((l) =>
      l.stream && l.conn?.peerHello && !l.conn.broken && l.stream.acked === l.stream.written &&
      l.stream.sendPtr === l.stream.written + 1
    );
}

const timer = setInterval(tick, TICK_MS);

async function quit(): Promise<never> {
  clearInterval(timer);
  for (const link of links.values()) if (link.conn) stopConn(link.conn);
  await node.close();
  out({ event: "bye" });
  Deno.exit(0);
}

// ---------------------------------------------------------------------------------------------
// Commands

const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
let pending = "";
for await (const text of lines) {
  pending += text;
  let nl: number;
  while ((nl = pending.indexOf("\n")) >= 0) {
    const line = pending.slice(0, nl).trim();
    pending = pending.slice(nl + 1);
    if (!line) continue;
    const cmd = JSON.parse(line) as { cmd: string; id?: number; peer?: number };
    switch (cmd.cmd) {
      case "mesh":
        wanted = true;
        for (const link of links.values()) link.retryAt = 0;
        tick();
        break;
      case "forget": {
        const link = links.get(cmd.peer!)!;
        reconcile(link.peer);
        const s = link.session;
        if (s) {
          s.close();
          endStream(link, "forgotten");
        }
        out({ event: "forgot", id: cmd.id, peer: cmd.peer, had: !!s });
        break;
      }
      case "drain":
        draining = true;
        out({ event: "draining", id: cmd.id });
        break;
      case "state":
        out({
          event: "state",
          id: cmd.id,
          nodeId: selfId,
          drained: drained(),
          peers: Object.fromEntries([...links.values()].map((l) => [l.peer, peerState(l)])),
        });
        break;
      case "report":
        out({ event: "report", id: cmd.id, nodeId: selfId, streams });
        break;
      case "quit":
        await quit();
    }
  }
}
await quit();
