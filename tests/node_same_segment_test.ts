/**
 * Session data that a peer writes right behind its last handshake bytes, in the same TCP write,
 * must reach the session intact: the plain Success ExBlock, the last TLS handshake record, or
 * the AuthOnly close_notify, each glued to session bytes. The peer (node 2) is scripted: it runs
 * the real incoming procedure over a raw socket whose writes go through a {@link Gate} that can
 * hold bytes and then send them together with the session data in one write.
 */
import assert from "node:assert/strict";
import { runIncomingHandshake } from "../lib/handshake/handshake.ts";
import { StreamTransport, type TlsStarter } from "../lib/handshake/stream_transport.ts";
import type { HandshakeEnvironment } from "../lib/handshake/types.ts";
import type { NodeConfig } from "../lib/node/config.ts";
import { InterconnectNode } from "../lib/node/node.ts";
import { VirtualIdAllocator } from "../lib/proxy/virtual_id.ts";
import { authOnlyTls, createTlsContext, startTls } from "../lib/tls/mod.ts";
import { concat } from "./_helpers/bytes.ts";
import { freePorts, readText, tlsFixture } from "./_helpers/cluster.ts";

const DATA = "session bytes right behind the handshake";

/** Writes through, or holds bytes until {@link Gate.flush} sends them in one write. */
class Gate {
  #held: Uint8Array[] = [];
  #mode: "pass" | "hold" | "passOnce" | "holdCloseNotify" = "pass";
  #partial = new Uint8Array(0);
  writes: number[] = [];

  constructor(readonly sink: (bytes: Uint8Array) => Promise<void>) {}

  /** Hold everything from now on. */
  hold(): void {
    this.#mode = "hold";
  }

  /** Let the next write through, then hold. */
  holdAfterNextWrite(): void {
    this.#mode = "passOnce";
  }

  /** Pass whole TLS records until a close_notify, then hold it and everything after. */
  holdFromCloseNotify(): void {
    this.#mode = "holdCloseNotify";
  }

  async write(bytes: Uint8Array): Promise<void> {
    if (this.#mode === "passOnce") {
      this.#mode = "hold";
      return await this.#send(bytes);
    }
    if (this.#mode === "hold") {
      this.#held.push(bytes.slice());
      return;
    }
    if (this.#mode === "holdCloseNotify") {
      let buf = concat(this.#partial, bytes);
      const pass: Uint8Array[] = [];
      while (buf.length >= 5) {
        const end = 5 + ((buf[3] << 8) | buf[4]);
        if (buf.length < end) break;
        const record = buf.slice(0, end);
        buf = buf.subarray(end);
        const length = end - 5;
        const closeNotify = record[0] === 21 || (record[0] === 23 && length === 19);
        if (closeNotify || this.#held.length > 0) this.#held.push(record);
        else pass.push(record);
      }
      this.#partial = buf.slice();
      if (pass.length > 0) await this.#send(concat(...pass));
      return;
    }
    await this.#send(bytes);
  }

  /** Sends everything held plus `tail` in one write, then passes writes through again. */
  async flush(tail: Uint8Array): Promise<void> {
    const bytes = concat(...this.#held, tail);
    this.#held = [];
    this.#mode = "pass";
    await this.#send(bytes);
  }

  async #send(bytes: Uint8Array): Promise<void> {
    this.writes.push(bytes.length);
    await this.sink(bytes);
  }
}

type Mode = "plain" | "tls" | "authOnly";

async function run(mode: Mode): Promise<void> {
  const [port1, port2] = freePorts(2);
  const nodes = [
    { nodeId: 1, host: "node-1", port: port1, address: "127.0.0.1" },
    { nodeId: 2, host: "node-2", port: port2, address: "127.0.0.1" },
  ];
  const enc: Partial<NodeConfig> = mode === "plain"
    ? {}
    : { encryption: "required", tls: tlsFixture("node-1", mode === "authOnly") };
  await using node1 = InterconnectNode.start({
    nodeId: 1,
    listen: { host: "127.0.0.1", port: port1 },
    nodes,
    ...enc,
  }, { workers: 1 });
  await node1.ready();

  // Node 2: a scripted acceptor on a raw socket, TLS client (higher node id).
  using listener = Deno.listen({ hostname: "127.0.0.1", port: port2 });
  const ids = new VirtualIdAllocator();
  const creds = tlsFixture("node-2", mode === "authOnly");
  const ctx = createTlsContext({ cert: creds.cert, key: creds.key, ca: creds.ca });
  const acceptor = (async () => {
    const conn = await listener.accept();
    conn.setNoDelay(true);
    const writer = conn.writable.getWriter();
    const gate = new Gate((b) => writer.write(b));
    let tail: (() => Promise<void>) | undefined;
    const tls: TlsStarter = async (c, role, authOnly) => {
      const transport = { reader: c.reader, write: (b: Uint8Array) => gate.write(b) };
      if (authOnly) {
        gate.holdFromCloseNotify();
        const r = await authOnlyTls(transport, role, ctx);
        tail = () => gate.flush(new TextEncoder().encode(DATA));
        return { authCN: r.authCN };
      }
      gate.holdAfterNextWrite(); // the ClientHello goes out; Finished waits for the data
      const secure = await startTls(transport, role, ctx);
      const w = secure.writable.getWriter();
      await w.write(new TextEncoder().encode(DATA)); // an application record, held
      w.releaseLock();
      tail = () => gate.flush(new Uint8Array(0));
      return { authCN: secure.authCN };
    };
    const t = new StreamTransport({
      readable: conn.readable,
      writable: new WritableStream({ write: (b) => gate.write(b) }),
      startTls: tls,
      onClose: () => {
        try {
          conn.close();
        } catch {
          // the streams' own close may have released it already
        }
      },
    });
    const table = new Map(nodes.map((n) => [n.nodeId, n]));
    const env: HandshakeEnvironment = {
      resolve: (n) => Promise.resolve(table.get(n)),
      nodeInfo: (n) => Promise.resolve(table.get(n)),
      connect: () => Promise.reject(new Error("not used")),
      continuation: () => Promise.resolve({ kind: "nak" }),
      newSession: () => {
        if (mode === "plain") gate.hold(); // hold the Success ExBlock
        return Promise.resolve({ kind: "ok", selfVirtualId: ids.next(2) });
      },
    };
    const outcome = await runIncomingHandshake(
      {
        selfNodeId: 2,
        selfHostName: "node-2",
        programPid: 2n,
        programStartTime: 2n,
        clusterUUID: "",
        acceptUUID: [],
        acceptedVersionTags: [],
        cookie: "",
        scopeId: [0n, 0n],
        encryption: mode === "plain" ? "disabled" : "required",
        tlsAuthOnly: mode === "authOnly",
        ballastSize: 0,
        handshakeTimeoutMs: 1000,
      },
      env,
      t,
    );
    assert.equal(outcome.kind, "done");
    if (mode === "plain") await gate.flush(new TextEncoder().encode(DATA));
    else await tail!();
    return { gate, close: () => t.close() };
  })();

  const session = await node1.connect(2);
  const { gate, close } = await acceptor;
  try {
    assert.equal(await readText(session, DATA.length), DATA);
    assert.equal(session.params.encryption, mode === "tls");
    assert.equal(session.params.authOnly, mode === "authOnly");
    if (mode !== "plain") assert.equal(session.params.authCN, "node-2");
    // The glued write really was one write that carried both.
    assert.ok(gate.writes.at(-1)! >= DATA.length, `last write of ${gate.writes.at(-1)} bytes`);
  } finally {
    close();
  }
}

for (const mode of ["plain", "tls", "authOnly"] as const) {
  Deno.test(`${mode}: session data in the same TCP write as the last handshake bytes arrives intact`, async () => {
    await run(mode);
  });
}
