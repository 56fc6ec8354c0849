import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { generateCredentials } from "../lib/tls/generate.ts";
import { createTlsContext } from "../lib/tls/mod.ts";
import { runSide, tcpPair } from "./fixtures/tls/harness.ts";

Deno.test("generateCredentials makes a CA and node certificates that X.509 parsers accept", async () => {
  const { ca, nodes } = await generateCredentials(["node-1", "node-2"], { validDays: 2 });
  const caCert = new X509Certificate(ca);
  assert.equal(caCert.ca, true);
  assert.equal(caCert.subject, "CN=ic-handshake throw-away CA");
  for (const [i, n] of nodes.entries()) {
    const cert = new X509Certificate(n.cert);
    assert.equal(cert.subject, `CN=node-${i + 1}`);
    assert.equal(cert.ca, false);
    assert.ok(cert.checkIssued(caCert));
    assert.ok(cert.verify(caCert.publicKey));
    assert.equal(n.ca, ca);
    assert.equal(createTlsContext(n).ownCN, `node-${i + 1}`); // key matches certificate
  }
});

Deno.test("generated credentials pass mutual TLS in both modes, and another CA's node is refused", async () => {
  const { nodes: [n1, n2] } = await generateCredentials(["node-1", "node-2"]);
  const { nodes: [stranger] } = await generateCredentials(["node-1"]);
  for (const mode of ["full", "authOnly"] as const) {
    await using pair = await tcpPair();
    const [s, c] = await Promise.all([
      runSide(pair.a, "server", createTlsContext(n1), mode),
      runSide(pair.b, "client", createTlsContext(n2), mode),
    ]);
    assert.deepEqual(s, { ok: true, authCN: "node-2", protocol: "TLSv1.3" });
    assert.deepEqual(c, { ok: true, authCN: "node-1", protocol: "TLSv1.3" });
  }
  await using pair = await tcpPair();
  const [s] = await Promise.all([
    runSide(pair.a, "server", createTlsContext(n1), "authOnly"),
    // It trusts our CA, but its own certificate comes from another one.
    runSide(pair.b, "client", createTlsContext({ ...stranger, ca: n1.ca }), "authOnly"),
  ]);
  assert.equal(s.ok, false);
  assert.equal(!s.ok && s.error.code, "certificate_invalid");
});
