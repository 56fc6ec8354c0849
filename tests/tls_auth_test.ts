import assert from "node:assert/strict";
import tls from "node:tls";
import { BufferedReader, streamSource } from "../lib/io/buffered_reader.ts";
import { readTlsRecord } from "../lib/tls/records.ts";
import {
  commonNameText,
  createTlsContext,
  startTls,
  type TlsContext,
  TlsError,
  tlsRoleFor,
  type TlsVersion,
} from "../lib/tls/mod.ts";
import { creds, fixture, type Outcome, runSide, tcpPair } from "./fixtures/tls/harness.ts";

const ctx = (name: string, maxVersion?: TlsVersion) =>
  createTlsContext(creds(name), { maxVersion });
const VERSIONS: TlsVersion[] = ["TLSv1.2", "TLSv1.3"];
const MODES = ["full", "authOnly"] as const;

/** Runs a TLS server on the dialed end and a TLS client on the accepted end. */
async function handshake(
  server: TlsContext,
  client: TlsContext,
  mode: "full" | "authOnly",
): Promise<{ server: Outcome; client: Outcome }> {
  await using pair = await tcpPair();
  const [s, c] = await Promise.all([
    runSide(pair.a, "server", server, mode),
    runSide(pair.b, "client", client, mode),
  ]);
  return { server: s, client: c };
}

function assertRefused(o: Outcome, code?: string): TlsError {
  assert.equal(o.ok, false, `expected a refusal, got ${JSON.stringify(o)}`);
  const error = (o as { error: TlsError }).error;
  assert.ok(error instanceof TlsError);
  if (code) assert.equal(error.code, code, error.message);
  return error;
}

Deno.test("tlsRoleFor: the lower node id is the TLS server, whoever dialed", () => {
  assert.equal(tlsRoleFor(1, 2), "server");
  assert.equal(tlsRoleFor(2, 1), "client");
  assert.equal(tlsRoleFor(7, 1000), "server");
  assert.equal(tlsRoleFor(1000, 7), "client");
});

for (const mode of MODES) {
  for (const v of VERSIONS) {
    Deno.test(`${mode} ${v}: mutual TLS succeeds and each side gets the other's CN`, async () => {
      const r = await handshake(ctx("node-1", v), ctx("node-2", v), mode);
      assert.deepEqual(r.server, { ok: true, authCN: "node-2", protocol: v });
      assert.deepEqual(r.client, { ok: true, authCN: "node-1", protocol: v });
    });

    Deno.test(`${mode} ${v}: the server refuses a client certificate from an unknown CA`, async () => {
      const r = await handshake(ctx("node-1", v), ctx("rogue", v), mode);
      const e = assertRefused(r.server, "certificate_invalid");
      assert.match(e.message, /^Error during certificate validation error# /);
      assertRefused(r.client); // the server drops the connection
    });

    Deno.test(`${mode} ${v}: the client refuses a server certificate from an unknown CA`, async () => {
      const r = await handshake(ctx("rogue", v), ctx("node-2", v), mode);
      const e = assertRefused(r.client, "certificate_invalid");
      assert.match(e.message, /^Error during certificate validation error# /);
      assertRefused(r.server);
    });

    Deno.test(`${mode} ${v}: an expired certificate is refused in both roles`, async () => {
      const asClient = await handshake(ctx("node-1", v), ctx("expired", v), mode);
      assertRefused(asClient.server, "certificate_invalid");
      assertRefused(asClient.client);
      const asServer = await handshake(ctx("expired", v), ctx("node-2", v), mode);
      assertRefused(asServer.client, "certificate_invalid");
      assertRefused(asServer.server);
    });
  }
}

Deno.test("control: a certificate made like the expired one but valid now passes both roles", async () => {
  for (const mode of MODES) {
    const asClient = await handshake(ctx("node-1"), ctx("node-5-viaca"), mode);
    assert.deepEqual(asClient.server, { ok: true, authCN: "node-5-viaca", protocol: "TLSv1.3" });
    const asServer = await handshake(ctx("node-5-viaca"), ctx("node-2"), mode);
    assert.deepEqual(asServer.client, { ok: true, authCN: "node-5-viaca", protocol: "TLSv1.3" });
  }
});

Deno.test("an RSA-2048 node certificate works in both roles", async () => {
  const r1 = await handshake(ctx("node-rsa"), ctx("node-2"), "authOnly");
  assert.deepEqual(r1.client, { ok: true, authCN: "node-3-rsa", protocol: "TLSv1.3" });
  const r2 = await handshake(ctx("node-1", "TLSv1.2"), ctx("node-rsa", "TLSv1.2"), "full");
  assert.deepEqual(r2.server, { ok: true, authCN: "node-3-rsa", protocol: "TLSv1.2" });
});

Deno.test("a certificate text with its chain after the leaf verifies against the root CA only", async () => {
  for (const v of VERSIONS) {
    const asServer = await handshake(ctx("node-chain", v), ctx("node-2", v), "authOnly");
    assert.deepEqual(asServer.client, { ok: true, authCN: "node-4-chained", protocol: v });
    const asClient = await handshake(ctx("node-1", v), ctx("node-chain", v), "authOnly");
    assert.deepEqual(asClient.server, { ok: true, authCN: "node-4-chained", protocol: v });
  }
});

Deno.test("a leaf without its intermediate is refused", async () => {
  const chain = creds("node-chain");
  const leafOnly = chain.cert.slice(0, chain.cert.indexOf("-----END CERTIFICATE-----") + 25);
  const bare = createTlsContext({ ...chain, cert: leafOnly });
  const r = await handshake(ctx("node-1"), bare, "authOnly");
  assertRefused(r.server, "certificate_invalid");
});

Deno.test("the negotiated version follows the contexts: 1.3 by default, 1.2 when one side caps it", async () => {
  const r = await handshake(ctx("node-1"), ctx("node-2", "TLSv1.2"), "full");
  assert.equal(r.server.ok && r.server.protocol, "TLSv1.2");
  const no = await handshake(
    createTlsContext(creds("node-1"), { minVersion: "TLSv1.3" }),
    ctx("node-2", "TLSv1.2"),
    "full",
  );
  assertRefused(no.server);
  assertRefused(no.client);
});

for (const v of VERSIONS) {
  Deno.test(`${v}: the server refuses a client that sends no certificate`, async () => {
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    // A plain node:tls client with no certificate, on its own net.Socket.
    const client = tls.connect({
      host: "127.0.0.1",
      port: listener.addr.port,
      ca: fixture("ca.pem"),
      checkServerIdentity: () => undefined,
      maxVersion: v,
    });
    const clientDone = new Promise<void>((resolve) => {
      client.on("error", () => resolve());
      client.on("close", () => resolve());
    });
    const conn = await listener.accept();
    const reader = new BufferedReader(streamSource(conn.readable));
    const writer = conn.writable.getWriter();
    const outcome = await runSide(
      {
        reader,
        write: (b) => writer.write(b),
        close() {
          writer.releaseLock();
          conn.close();
        },
      },
      "server",
      ctx("node-1", v),
      "full",
    );
    const e = assertRefused(outcome, "no_peer_certificate");
    assert.match(e.message, /peer did not return a certificate/);
    await clientDone;
    client.destroy();
  });
}

Deno.test("the client sends no SNI (and the server gets a typed error when the peer closes mid-TLS)", async () => {
  await using pair = await tcpPair();
  const client = startTls(pair.b, "client", ctx("node-2"));
  const record = await readTlsRecord(pair.a.reader);
  assert.ok(record);
  assert.equal(record[0], 22); // handshake
  assert.equal(record[5], 1); // ClientHello
  const extensions = clientHelloExtensions(record);
  assert.ok(extensions.length > 0);
  assert.ok(!extensions.includes(0), `server_name extension present: ${extensions}`);
  pair.a.close(); // the peer goes away in the middle of the TLS handshake
  await assert.rejects(client, (e) => e instanceof TlsError && e.code === "peer_closed");
});

Deno.test("createTlsContext refuses unusable credentials with bad_credentials", () => {
  const good = creds("node-1");
  const cases = [
    { ...good, key: fixture("node-2.key") }, // key of another certificate
    { ...good, cert: "not a certificate" },
    { ...good, key: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n" },
    { ...good, ca: "" },
  ];
  for (const c of cases) {
    assert.throws(
      () => createTlsContext(c),
      (e) => e instanceof TlsError && e.code === "bad_credentials",
    );
  }
  assert.equal(createTlsContext(good).ownCN, "node-1");
});

Deno.test("commonNameText: first CN, cut at the first NUL, at most 255 bytes", () => {
  assert.equal(commonNameText(undefined), "");
  assert.equal(commonNameText("node-1"), "node-1");
  assert.equal(commonNameText(["first", "second"]), "first");
  assert.equal(commonNameText("abc\0def"), "abc");
  assert.equal(commonNameText("x".repeat(300)), "x".repeat(255));
  // 127 two-byte characters are 254 bytes; the 128th would end at byte 256 and is dropped.
  assert.equal(commonNameText("é".repeat(200)), "é".repeat(127));
});

/** The extension types of a ClientHello record. */
function clientHelloExtensions(record: Uint8Array): number[] {
  const dv = new DataView(record.buffer, record.byteOffset, record.byteLength);
  let p = 5 + 4 + 2 + 32; // record header, handshake header, version, random
  p += 1 + record[p]; // session id
  p += 2 + dv.getUint16(p); // cipher suites
  p += 1 + record[p]; // compression methods
  const end = p + 2 + dv.getUint16(p);
  p += 2;
  const types: number[] = [];
  while (p < end) {
    types.push(dv.getUint16(p));
    p += 4 + dv.getUint16(p + 2);
  }
  return types;
}
