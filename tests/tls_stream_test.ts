import assert from "node:assert/strict";
import {
  authOnlyTls,
  createTlsContext,
  startTls,
  TlsError,
  type TlsRole,
  type TlsVersion,
} from "../lib/tls/mod.ts";
import { readTlsRecord } from "../lib/tls/records.ts";
import {
  ascii,
  concat,
  creds,
  memoryEndpoint,
  QueueSource,
  readAll,
  readN,
  tcpPair,
} from "./fixtures/tls/harness.ts";

const VERSIONS: TlsVersion[] = ["TLSv1.2", "TLSv1.3"];
const ctx = (name: string, maxVersion?: TlsVersion) =>
  createTlsContext(creds(name), { maxVersion });
const node1 = ctx("node-1");
const node2 = ctx("node-2");

/** Deterministic pseudo-random bytes. */
function payload(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

async function writeAll(writable: WritableStream<Uint8Array>, data: Uint8Array, chunk: number) {
  const writer = writable.getWriter();
  for (let off = 0; off < data.length; off += chunk) {
    await writer.write(data.subarray(off, off + chunk));
  }
  writer.releaseLock();
}

for (const v of VERSIONS) {
  for (
    const [role1, role2] of [["server", "client"], ["client", "server"]] as [TlsRole, TlsRole][]
  ) {
    Deno.test(`full ${v}: 1 MiB each way at once, node 1 as TLS ${role1}`, async () => {
      await using pair = await tcpPair();
      const [a, b] = await Promise.all([
        startTls(pair.a, role1, ctx("node-1", v)),
        startTls(pair.b, role2, ctx("node-2", v)),
      ]);
      await using _a = a;
      await using _b = b;
      assert.equal(a.protocol, v);
      assert.equal(a.authCN, "node-2");
      assert.equal(b.authCN, "node-1");
      const toB = payload(1 << 20, 1);
      const toA = payload(1 << 20, 2);
      const [gotA, gotB] = await Promise.all([
        readN(a.readable, toA.length),
        readN(b.readable, toB.length),
        writeAll(a.writable, toB, 50_000),
        writeAll(b.writable, toA, 7_000),
      ]);
      assert.ok(gotA.every((x, i) => x === toA[i]));
      assert.ok(gotB.every((x, i) => x === toB[i]));
    });
  }
}

Deno.test("full: closing the writable sends close_notify and the peer's readable ends cleanly", async () => {
  await using pair = await tcpPair();
  const [s, c] = await Promise.all([
    startTls(pair.a, "server", node1),
    startTls(pair.b, "client", node2),
  ]);
  await using _s = s;
  await using _c = c;
  const writer = c.writable.getWriter();
  await writer.write(ascii("last words"));
  await writer.close();
  assert.deepEqual(await readAll(s.readable), ascii("last words"));
  // The other direction is still open after the client's close_notify.
  await writeAll(s.writable, ascii("reply"), 100);
  assert.deepEqual(await readN(c.readable, 5), ascii("reply"));
});

Deno.test("full: a peer that closes TCP without close_notify makes the readable fail with peer_closed", async () => {
  await using pair = await tcpPair();
  const [s, c] = await Promise.all([
    startTls(pair.a, "server", node1),
    startTls(pair.b, "client", node2),
  ]);
  await using _s = s;
  await using _c = c;
  await writeAll(c.writable, ascii("partial"), 100);
  assert.deepEqual(await readN(s.readable, 7), ascii("partial"));
  pair.b.close();
  await assert.rejects(
    readAll(s.readable),
    (e) => e instanceof TlsError && e.code === "peer_closed",
  );
});

Deno.test("TLS records already buffered in the reader (ClientHello glued to the last handshake bytes) are consumed first", async () => {
  const toServer = new QueueSource();
  const toClient = new QueueSource();
  const lastHandshakeBytes = ascii("...end of the Success ExBlock");
  let first = true;
  const server = memoryEndpoint(toServer, (bytes) => toClient.deliver(bytes));
  const client = memoryEndpoint(toClient, (bytes) => {
    // The client's first TLS bytes (the ClientHello) travel in the same chunk as the last
    // handshake message.
    toServer.deliver(first ? concat(lastHandshakeBytes, bytes) : bytes);
    first = false;
  });
  const clientTls = startTls(client, "client", node2);
  // The coordinator reads the handshake's last message; the ClientHello is now buffered.
  assert.deepEqual(await server.reader.readExactly(lastHandshakeBytes.length), lastHandshakeBytes);
  assert.ok(server.reader.buffered > 0, "the ClientHello should already be in the reader");
  const [s, c] = await Promise.all([startTls(server, "server", node1), clientTls]);
  await using _s = s;
  await using _c = c;
  assert.equal(s.authCN, "node-2");
  assert.equal(c.authCN, "node-1");
  await writeAll(c.writable, ascii("hello"), 100);
  assert.deepEqual(await readN(s.readable, 5), ascii("hello"));
  await writeAll(s.writable, ascii("world"), 100);
  assert.deepEqual(await readN(c.readable, 5), ascii("world"));
});

Deno.test("an AbortSignal aborts a stuck handshake with a typed error", async () => {
  await using pair = await tcpPair();
  await using capture = await tcpPair();
  // A real ClientHello from a client whose connection then goes nowhere.
  const capturing = startTls(capture.b, "client", node2).catch((e) => e);
  const clientHello = await readTlsRecord(capture.a.reader);
  capture.a.close();
  assert.ok((await capturing) instanceof TlsError);
  // The server gets the ClientHello, answers, then waits forever for the client's next flight.
  const controller = new AbortController();
  const server = startTls(pair.a, "server", node1, { signal: controller.signal }).catch((e) => e);
  await pair.b.write(clientHello!);
  const serverHello = await readTlsRecord(pair.b.reader);
  assert.equal(serverHello![0], 22);
  controller.abort(new Error("handshake deadline"));
  const error = await server;
  assert.ok(error instanceof TlsError, String(error));
  assert.equal(error.code, "aborted");
  assert.match(error.message, /handshake deadline/);
});

Deno.test("an already aborted signal rejects at once, in both modes", async () => {
  await using pair = await tcpPair();
  const signal = AbortSignal.abort(new Error("too late"));
  for (const run of [startTls, authOnlyTls]) {
    await assert.rejects(
      run(pair.a, "server", node1, { signal }),
      (e) => e instanceof TlsError && e.code === "aborted",
    );
  }
});

Deno.test("a peer that talks plaintext where TLS is due fails with bad_record, never as data", async () => {
  await using pair = await tcpPair();
  const server = startTls(pair.a, "server", node1).catch((e) => e);
  await pair.b.write(ascii("GET / HTTP/1.1\r\n\r\n"));
  const error = await server;
  assert.ok(error instanceof TlsError, String(error));
  assert.equal(error.code, "bad_record");
});

Deno.test("a peer that closes before sending anything gives peer_closed", async () => {
  await using pair = await tcpPair();
  const server = startTls(pair.a, "server", node1).catch((e) => e);
  pair.b.close();
  const error = await server;
  assert.ok(error instanceof TlsError, String(error));
  assert.equal(error.code, "peer_closed");
});
