import assert from "node:assert/strict";
import {
  authOnlyTls,
  createTlsContext,
  startTls,
  TlsError,
  type TlsRole,
  type TlsVersion,
} from "../lib/tls/mod.ts";
import {
  ascii,
  concat,
  creds,
  type Endpoint,
  memoryEndpoint,
  QueueSource,
  tcpPair,
} from "./fixtures/tls/harness.ts";

const VERSIONS: TlsVersion[] = ["TLSv1.2", "TLSv1.3"];
const ROLES: TlsRole[] = ["server", "client"];
const other = (r: TlsRole): TlsRole => r === "server" ? "client" : "server";
const ctx = (name: string, maxVersion: TlsVersion) => createTlsContext(creds(name), { maxVersion });

/**
 * Plain session bytes that start like a TLS 1.2/1.3 application-data record: fed to the TLS
 * engine by mistake they would fail it (bad MAC), so they prove that nothing after the
 * close_notify record reached the engine.
 */
const PLAIN = concat(
  new Uint8Array([0x17, 0x03, 0x03, 0x00, 0x13]),
  new Uint8Array(19).fill(0xee),
  ascii("plain session bytes after close_notify"),
);

/** True for a record that can only be close_notify in an AuthOnly exchange. */
function isCloseNotify(record: Uint8Array): boolean {
  const length = (record[3] << 8) | record[4];
  return record[0] === 21 || (record[0] === 23 && length === 19);
}

/**
 * Wraps a peer's write path: every record goes through at once except close_notify, which is
 * kept back. `release(tail)` then sends close_notify and `tail` in a single write.
 */
function holdCloseNotify(write: (bytes: Uint8Array) => Promise<void>) {
  let held: Uint8Array | undefined;
  let recordsAfterHeld = 0;
  let partial = new Uint8Array(0);
  return {
    async write(bytes: Uint8Array): Promise<void> {
      let buf = concat(partial, bytes);
      const pass: Uint8Array[] = [];
      while (buf.length >= 5) {
        const end = 5 + ((buf[3] << 8) | buf[4]);
        if (buf.length < end) break;
        const record = buf.slice(0, end);
        buf = buf.subarray(end);
        if (held === undefined && isCloseNotify(record)) held = record;
        else {
          if (held !== undefined) recordsAfterHeld++;
          pass.push(record);
        }
      }
      partial = buf.slice();
      if (pass.length > 0) await write(concat(...pass));
    },
    async release(tail: Uint8Array): Promise<Uint8Array> {
      assert.ok(held, "the peer wrote no close_notify");
      assert.equal(recordsAfterHeld, 0, "the peer wrote records after its close_notify");
      assert.equal(partial.length, 0);
      await write(concat(held, tail));
      return held;
    },
  };
}

/** An in-memory connection: each end's writes are delivered to the other's reader. */
function memoryPair(): { a: Endpoint; b: Endpoint } {
  const toA = new QueueSource();
  const toB = new QueueSource();
  return {
    a: memoryEndpoint(toA, (bytes) => toB.deliver(bytes)),
    b: memoryEndpoint(toB, (bytes) => toA.deliver(bytes)),
  };
}

for (const v of VERSIONS) {
  for (const role of ROLES) {
    Deno.test(`authOnly ${v} as ${role}: plain bytes the peer writes right after its own teardown stay in the reader, exactly`, async () => {
      await using pair = await tcpPair();
      const fromA = ascii(`session data from the ${role}`);
      const fromB = ascii(`session data from the ${other(role)}`);
      const [ra, rb] = await Promise.all([
        authOnlyTls(pair.a, role, ctx("node-1", v)).then(async (r) => {
          await pair.a.write(fromA); // at once, as YDB starts the session after its teardown
          return r;
        }),
        authOnlyTls(pair.b, other(role), ctx("node-2", v)).then(async (r) => {
          await pair.b.write(fromB);
          return r;
        }),
      ]);
      assert.deepEqual(ra, { authCN: "node-2", protocol: v });
      assert.deepEqual(rb, { authCN: "node-1", protocol: v });
      assert.deepEqual(await pair.a.reader.readExactly(fromB.length), fromB);
      assert.deepEqual(await pair.b.reader.readExactly(fromA.length), fromA);
      // And the plain connection goes on both ways.
      await pair.a.write(ascii("ping"));
      assert.deepEqual(await pair.b.reader.readExactly(4), ascii("ping"));
      await pair.b.write(ascii("pong"));
      assert.deepEqual(await pair.a.reader.readExactly(4), ascii("pong"));
      assert.equal(pair.a.reader.buffered, 0);
      assert.equal(pair.b.reader.buffered, 0);
    });

    Deno.test(`authOnly ${v} as ${role}: close_notify and plain bytes glued in one chunk are split exactly (in memory)`, async () => {
      const { a, b } = memoryPair();
      const peer = holdCloseNotify((bytes) => b.write(bytes));
      const peerEnd: Endpoint = { reader: b.reader, write: (x) => peer.write(x), close: b.close };
      // Checked at the very moment authOnlyTls settles: no read of the next record is under way.
      let bufferedAtResolve = -1;
      const mine = authOnlyTls(a, role, ctx("node-1", v)).then((r) => {
        bufferedAtResolve = a.reader.buffered;
        return r;
      });
      const theirs = await authOnlyTls(peerEnd, other(role), ctx("node-2", v));
      // The peer is through its teardown, but its close_notify has not gone out yet: now it
      // does, with the session bytes right behind it, in one chunk.
      const held = await peer.release(PLAIN);
      assert.deepEqual(await mine, { authCN: "node-2", protocol: v });
      assert.deepEqual(theirs, { authCN: "node-1", protocol: v });
      assert.equal(held[0], v === "TLSv1.3" ? 23 : 21);
      // Not one byte after the close_notify record was consumed.
      assert.equal(bufferedAtResolve, PLAIN.length);
      assert.equal(a.reader.buffered, PLAIN.length);
      assert.deepEqual(a.reader.takeBuffered(), PLAIN);
    });

    Deno.test(`authOnly ${v} as ${role}: close_notify and plain bytes in one TCP write are split exactly`, async () => {
      await using pair = await tcpPair();
      const peer = holdCloseNotify((bytes) => pair.b.write(bytes));
      const peerEnd: Endpoint = {
        reader: pair.b.reader,
        write: (x) => peer.write(x),
        close: pair.b.close,
      };
      const mine = authOnlyTls(pair.a, role, ctx("node-1", v));
      await authOnlyTls(peerEnd, other(role), ctx("node-2", v));
      await peer.release(PLAIN);
      assert.deepEqual(await mine, { authCN: "node-2", protocol: v });
      assert.deepEqual(await pair.a.reader.readExactly(PLAIN.length), PLAIN);
      await pair.b.write(ascii("more"));
      assert.deepEqual(await pair.a.reader.readExactly(4), ascii("more"));
      assert.equal(pair.a.reader.buffered, 0);
    });

    Deno.test(`authOnly ${v} as ${role}: application data instead of close_notify fails with "non-zero return from SSL_read_ex"`, async () => {
      await using pair = await tcpPair();
      const mine = authOnlyTls(pair.a, role, ctx("node-1", v)).catch((e) => e);
      const secure = await startTls(pair.b, other(role), ctx("node-2", v));
      const writer = secure.writable.getWriter();
      await writer.write(ascii("12345"));
      writer.releaseLock();
      const error = await mine;
      assert.ok(error instanceof TlsError, String(error));
      assert.equal(error.code, "teardown_data");
      assert.equal(error.message, "non-zero return from SSL_read_ex: 5");
      pair.a.close();
      await secure.close();
    });

    Deno.test(`authOnly ${v} as ${role}: a peer that closes TCP without close_notify gives peer_closed`, async () => {
      await using pair = await tcpPair();
      const mine = authOnlyTls(pair.a, role, ctx("node-1", v)).catch((e) => e);
      const secure = await startTls(pair.b, other(role), ctx("node-2", v));
      pair.b.close(); // no close_notify
      const error = await mine;
      assert.ok(error instanceof TlsError, String(error));
      assert.equal(error.code, "peer_closed", error.message);
      await secure.close();
    });
  }
}

Deno.test("authOnly: a peer that closes inside a TLS record gives peer_closed, not a hang", async () => {
  await using pair = await tcpPair();
  const mine = authOnlyTls(pair.a, "server", ctx("node-1", "TLSv1.3")).catch((e) => e);
  await pair.b.write(new Uint8Array([22, 3, 1, 0, 200, 1, 0, 0])); // 8 of 205 bytes
  pair.b.close();
  const error = await mine;
  assert.ok(error instanceof TlsError, String(error));
  assert.equal(error.code, "peer_closed");
});
