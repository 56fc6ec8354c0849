/**
 * Hostile input against a LISTENING NODE over real loopback TCP. Each hostile peer is a raw
 * `Deno.connect` client writing bytes built with the wire codecs; each case must end in a
 * failure event of the right class and explanation, and a well-behaved peer node must still
 * complete a handshake with the node afterwards. The lower-level cases (every bit flip, every
 * missing field, fuzz) live in handshake_hostile_test.ts and wire_fuzz_test.ts; here the point
 * is the whole node: admission, queue, workers, TLS, event reporting, and that it survives.
 */
import assert from "node:assert/strict";
import { ActorId } from "../lib/wire/actor_id.ts";
import {
  decodeExBlock,
  decodeHandshakeReply,
  EXBLOCK_HEADER_SIZE,
  type HandshakeReply,
} from "../lib/wire/mod.ts";
import { encodeHandshakeRequest } from "../lib/wire/messages.ts";
import { createTlsContext, startTls } from "../lib/tls/mod.ts";
import { HandshakeError, type HandshakeEvent } from "../lib/node/node.ts";
import {
  concat,
  errorReplyFrame,
  exBlockHeader,
  flipBit,
  initialPacket,
  rawFrame,
  replyFrame,
  requestFrame,
  V,
} from "./_helpers/scripted_peer.ts";
import { withoutField } from "./_helpers/protobuf_fields.ts";
import { Rng, testSeed } from "./_helpers/random.ts";
import { tlsFixture } from "./_helpers/cluster.ts";
import {
  eventually,
  hostileId,
  nextEvent,
  type Nodes,
  RawPeer,
  recordEvents,
  requestTo,
  startNodes,
} from "./_helpers/hostile_peer.ts";
import { toHex } from "./_helpers/vectors.ts";

/** 300 ms + 2 x 1 s resolve wait: every handshake of these nodes ends within 2.3 s. */
const TIMEOUT = { handshakeTimeoutMs: 300 };
/** The listening node, the well-behaved peer, and the id hostile peers claim (in the table). */
const L = 1, GOOD = 2, CLAIMED = 3;

type Failure = Extract<HandshakeEvent, { ok: false }>;

function failureOf(e: HandshakeEvent): Failure {
  assert.equal(e.ok, false, "expected a failure event");
  return e as Failure;
}

/** A new-session handshake from the good peer to `L` that both sides see succeed. */
async function goodHandshake(c: Nodes): Promise<void> {
  const onL = nextEvent(c.node(L), (e) => e.direction === "incoming" && e.peerNodeId === GOOD);
  const session = await c.node(GOOD).connect(L);
  const e = await onL;
  assert.equal(e.ok, true, e.ok ? "" : `${e.failure}: ${e.explanation}`);
  session.close(); // the next good handshake is a new one again
}

/**
 * Runs `act` as a hostile peer against L, then checks L's next incoming failure event and that
 * a good handshake still succeeds.
 */
async function hostileCase(
  c: Nodes,
  act: (port: number) => Promise<void>,
  expect: { failure: Failure["failure"]; explanation: string | RegExp; peerNodeId?: number },
): Promise<Failure> {
  const event = nextEvent(c.node(L), (e) => !e.ok && e.direction === "incoming");
  await act(c.port(L));
  const e = failureOf(await event);
  console.log(`  node ${L} reported: ${e.failure} "${e.explanation}" (peer ${e.peerNodeId})`);
  assert.equal(e.failure, expect.failure, e.explanation);
  if (typeof expect.explanation === "string") assert.equal(e.explanation, expect.explanation);
  else assert.match(e.explanation, expect.explanation);
  if (expect.peerNodeId !== undefined) assert.equal(e.peerNodeId, expect.peerNodeId);
  await goodHandshake(c);
  return e;
}

/** Reads the node's all-zero initial packet and its ExBlock reply. */
async function readReply(peer: RawPeer): Promise<HandshakeReply> {
  assert.equal(toHex(await peer.read(52)), toHex(V.V2));
  const header = await peer.read(EXBLOCK_HEADER_SIZE);
  const size = new DataView(header.buffer, header.byteOffset).getUint32(4, true);
  const frame = concat(header, await peer.read(size));
  return decodeHandshakeReply(decodeExBlock(frame).payload);
}

Deno.test("a listening node survives hostile plain-TCP peers: each fails typed and a good peer still gets through", async (t) => {
  await using c = await startNodes([L, GOOD], { absent: [CLAIMED], extra: () => TIMEOUT });
  const seed = testSeed(0x4057);
  const rng = new Rng(seed);
  console.log(`node hostile seed ${seed}`);
  await goodHandshake(c); // the control

  await t.step("random bytes: TRANSIENT Initial packet CRC error", async () => {
    await hostileCase(c, async (port) => {
      await using p = await RawPeer.connect(port);
      await p.send(rng.bytes(200));
      await p.readToEnd();
    }, { failure: "transient", explanation: "Initial packet CRC error", peerNodeId: 0 });
  });

  await t.step("a valid-looking initial packet with a bad CRC: TRANSIENT", async () => {
    await hostileCase(c, async (port) => {
      await using p = await RawPeer.connect(port);
      await p.send(flipBit(initialPacket(hostileId(CLAIMED)), 49));
      assert.equal((await p.readToEnd()).bytes.length, 0, "nothing is sent back");
    }, { failure: "transient", explanation: "Initial packet CRC error", peerNodeId: 0 });
  });

  await t.step("version 7: PERMANENT Incompatible protocol 7", async () => {
    await hostileCase(c, async (port) => {
      await using p = await RawPeer.connect(port);
      await p.send(initialPacket(hostileId(CLAIMED), ActorId.EMPTY, 0n, 7n));
      assert.equal((await p.readToEnd()).bytes.length, 0);
    }, { failure: "permanent", explanation: "Incompatible protocol 7", peerNodeId: 0 });
  });

  await t.step("node id 0 in Self: PERMANENT, peer unknown", async () => {
    await hostileCase(c, async (port) => {
      await using p = await RawPeer.connect(port);
      await p.send(initialPacket(new ActorId(7061644215716937729n, 0, 0x80000000)));
      assert.equal((await p.readToEnd()).bytes.length, 0);
    }, {
      failure: "permanent",
      explanation: "SelfVirtualId.NodeId is empty in initial packet",
      peerNodeId: 0,
    });
  });

  await t.step(
    "half an initial packet, then close: TRANSIENT socket error with the counts",
    async () => {
      await hostileCase(c, async (port) => {
        const p = await RawPeer.connect(port);
        await p.send(initialPacket(hostileId(CLAIMED)).subarray(0, 26));
        p.close();
      }, {
        failure: "transient",
        explanation:
          "Socket error# connection unexpectedly closed state# ReceiveRequest processed# 26 remain# 26",
        peerNodeId: 0,
      });
    },
  );

  await t.step(
    "an ExBlock header announcing 64 MiB: PERMANENT at once, payload never awaited",
    async () => {
      // The connection stays open: had the node waited for the payload, the case would end in
      // "Handshake timed out" at the deadline instead.
      await hostileCase(c, async (port) => {
        await using p = await RawPeer.connect(port);
        await p.send(initialPacket(hostileId(CLAIMED)), exBlockHeader(64 << 20, 0x12345678));
        const { bytes } = await p.readToEnd();
        assert.equal(toHex(bytes), toHex(V.V2), "only the all-zero initial packet came back");
      }, {
        failure: "permanent",
        explanation: "Incorrect extended header size",
        peerNodeId: CLAIMED,
      });
    },
  );

  await t.step(
    "an ExBlock with a correct CRC that is not a THandshakeRequest: PERMANENT",
    async () => {
      await hostileCase(c, async (port) => {
        await using p = await RawPeer.connect(port);
        const garbage = new TextEncoder().encode("this is not a THandshakeRequest");
        await p.send(initialPacket(hostileId(CLAIMED)), rawFrame(garbage));
        await p.readToEnd();
      }, {
        failure: "permanent",
        explanation: "Incorrect THandshakeRequest",
        peerNodeId: CLAIMED,
      });
    },
  );

  for (const [field, name] of [[1, "Protocol"], [6, "SenderActorId"]] as const) {
    await t.step(`a THandshakeRequest without required ${name}: PERMANENT`, async () => {
      await hostileCase(c, async (port) => {
        await using p = await RawPeer.connect(port);
        const id = hostileId(CLAIMED);
        const payload = withoutField(encodeHandshakeRequest(requestTo(L, id)), field);
        await p.send(initialPacket(id), rawFrame(payload));
        await p.readToEnd();
      }, {
        failure: "permanent",
        explanation: "Incorrect THandshakeRequest",
        peerNodeId: CLAIMED,
      });
    });
  }

  for (const text of ["garbage", "", "[0:0:0]"]) {
    await t.step(
      `SenderActorId ${JSON.stringify(text)}: PERMANENT with the error reply`,
      async () => {
        const explanation = `Incorrect SenderActorId# ${text}`;
        await hostileCase(c, async (port) => {
          await using p = await RawPeer.connect(port);
          const id = hostileId(CLAIMED);
          await p.send(initialPacket(id), requestFrame(requestTo(L, id, { SenderActorId: text })));
          const { bytes, eof } = await p.readToEnd();
          assert.ok(eof);
          assert.equal(toHex(bytes), toHex(concat(V.V2, errorReplyFrame(explanation))));
        }, { failure: "permanent", explanation, peerNodeId: CLAIMED });
      },
    );
  }

  await t.step(
    "a node id not in the node table: PERMANENT with the error reply, before any worker",
    async () => {
      await hostileCase(c, async (port) => {
        await using p = await RawPeer.connect(port);
        const id = hostileId(4321);
        await p.send(initialPacket(id), requestFrame(requestTo(L, id)));
        const { bytes, eof } = await p.readToEnd();
        assert.ok(eof, "the node half-closes after the reply, so no reset loses it");
        const gist = "Peer node not registered in nameservice";
        assert.equal(toHex(bytes), toHex(concat(V.V2, errorReplyFrame(gist))));
      }, {
        failure: "permanent",
        explanation: "Peer node not registered in nameservice",
        peerNodeId: 4321,
      });
    },
  );

  const load = c.node(L).handshakeLoad;
  assert.deepEqual([load.running, load.queued], [{ incoming: 0, outgoing: 0 }, {
    incoming: 0,
    outgoing: 0,
  }]);
});

Deno.test("a slowloris peer fails at the deadline and holds no slot past it; a good peer is served meanwhile", async () => {
  await using c = await startNodes([L, GOOD], { absent: [CLAIMED], extra: () => TIMEOUT });
  const node = c.node(L);
  const rec = recordEvents(node);
  // Two slow peers at one byte per second: one after a valid initial packet (its handshake
  // holds a slot in the worker pool), one inside the initial packet (still in admission).
  const id = hostileId(CLAIMED);
  const tail = requestFrame(requestTo(L, id));
  const drips: Array<{ peer: RawPeer; bytes: Uint8Array; timer?: ReturnType<typeof setTimeout> }> =
    [
      { peer: await RawPeer.connect(c.port(L)), bytes: tail },
      { peer: await RawPeer.connect(c.port(L)), bytes: initialPacket(hostileId(CLAIMED)) },
    ];
  await drips[0].peer.send(initialPacket(id));
  const ended = drips.map((d) =>
    new Promise<void>((resolve) => {
      let i = 0;
      const drip = () => {
        d.peer.send(d.bytes.subarray(i, i + 1)).then(() => {
          i++;
          d.timer = setTimeout(drip, 1000);
        }, () => resolve()); // the node closed the connection
      };
      drip();
    })
  );
  const failures = [
    nextEvent(node, (e) => !e.ok && /State# ReceiveExRequest/.test(e.explanation)),
    nextEvent(node, (e) => !e.ok && /State# ReceiveRequest$/.test(e.explanation)),
  ];
  // While both are dripping, the slow handshake holds one slot and the good peer gets through.
  await goodHandshake(c);
  const during = node.handshakeLoad;
  assert.equal(during.running.incoming, 1, "the slowloris after its initial packet holds a slot");
  assert.equal(during.admitting, 1, "the slowloris inside its initial packet is in admission");

  const [inExBlock, inPacket] = (await Promise.all(failures)).map(failureOf);
  assert.equal(inExBlock.failure, "transient");
  assert.match(
    inExBlock.explanation,
    /^Handshake timed out, State# ReceiveExRequest(Header|Data)$/,
  );
  assert.equal(inExBlock.peerNodeId, CLAIMED);
  assert.equal(inPacket.failure, "transient");
  assert.equal(inPacket.explanation, "Handshake timed out, State# ReceiveRequest");
  // The slot is free once the failure is reported; nothing is queued or in admission.
  const after = node.handshakeLoad;
  assert.deepEqual(after.running, { incoming: 0, outgoing: 0 });
  assert.deepEqual(after.queued, { incoming: 0, outgoing: 0 });
  for (const d of drips) {
    await ended[drips.indexOf(d)]; // the node closed both: the next drip fails
    clearTimeout(d.timer);
    d.peer.close();
  }
  await eventually(() => node.handshakeLoad.admitting === 0, "no connection left in admission");
  await goodHandshake(c);
  rec.stop();
  assert.equal(rec.events.filter((e) => !e.ok).length, 2, "exactly the two slow peers failed");
});

Deno.test("a flood of 500 connections from unknown node ids: every one refused and closed, a good peer handshakes meanwhile", async () => {
  const FLOOD = 500;
  await using c = await startNodes([L, GOOD], { extra: () => TIMEOUT });
  const node = c.node(L);
  const rec = recordEvents(node);
  const rssBefore = Deno.memoryUsage().rss;
  let peak = 0;
  const gist = "Peer node not registered in nameservice";
  const expected = toHex(concat(V.V2, errorReplyFrame(gist)));
  const attack = Array.from({ length: FLOOD }, async (_, i) => {
    const id = hostileId(100_000 + i);
    const p = await RawPeer.connect(c.port(L));
    try {
      await p.send(initialPacket(id), requestFrame(requestTo(L, id)));
      const load = node.handshakeLoad;
      peak = Math.max(peak, load.queued.incoming + load.running.incoming);
      return await p.readToEnd();
    } finally {
      p.close();
    }
  });
  const good = goodHandshake(c);
  const results = await Promise.all(attack);
  await good;
  const rssAfter = Deno.memoryUsage().rss;
  console.log(
    `flood of ${FLOOD}: RSS ${(rssBefore / 2 ** 20).toFixed(1)} MiB before, ` +
      `${
        (rssAfter / 2 ** 20).toFixed(1)
      } MiB after; most handshakes running + queued seen: ${peak}`,
  );
  // Every attacker saw the reply and then a clean end of stream.
  assert.equal(results.filter((r) => r.eof).length, FLOOD, "every bad connection ended in EOF");
  assert.equal(results.filter((r) => toHex(r.bytes) === expected).length, FLOOD);
  // Refused in admission: no worker and no queue place was ever spent on them (the one
  // handshake that may have been seen running is the good peer's).
  assert.ok(peak <= 1, `${peak} handshakes running or queued at once`);
  rec.stop();
  const refused = rec.events.filter((e) => !e.ok && e.explanation === gist);
  assert.equal(refused.length, FLOOD);
  assert.ok(refused.every((e) => !e.ok && e.failure === "permanent"));
  // A generous bound only: the flood must not cost anything like 500 x 1 MiB.
  assert.ok(rssAfter - rssBefore < 256 * 2 ** 20, `RSS grew by ${rssAfter - rssBefore} bytes`);
  // The refused sockets are let go once each attacker has closed its side too.
  await eventually(() => node.handshakeLoad.admitting === 0, "no connection left in admission");
  const load = node.handshakeLoad;
  assert.deepEqual([load.running.incoming, load.queued.incoming], [0, 0]);
});

// ---------------------------------------------------------------------------------------------
// TLS and encryption downgrade

const fixture = (f: string) =>
  Deno.readTextFileSync(new URL(`./fixtures/tls/${f}`, import.meta.url));

/**
 * Sends a new session request that asks for encryption, checks the node's Success, and leaves
 * the connection where TLS starts (this node is the TLS client: its claimed id is higher).
 */
async function upToTls(p: RawPeer): Promise<void> {
  const id = hostileId(CLAIMED);
  await p.send(initialPacket(id), requestFrame(requestTo(L, id, { RequireEncryption: true })));
  const reply = await readReply(p);
  assert.equal(reply.Success?.StartEncryption, true);
}

Deno.test("a REQUIRED-mode node refuses hostile TLS peers and downgrades, and still serves a good peer", async (t) => {
  await using c = await startNodes([L, GOOD], {
    absent: [CLAIMED],
    extra: (id) => ({ ...TIMEOUT, encryption: "required", tls: tlsFixture(`node-${id}`) }),
  });
  await goodHandshake(c);

  await t.step("a peer that closes in the middle of TLS: PERMANENT TLS error", async () => {
    await hostileCase(c, async (port) => {
      await using p = await RawPeer.connect(port);
      await upToTls(p);
      // A handshake record header announcing 200 bytes, 20 of them, then the end.
      await p.send(Uint8Array.of(0x16, 0x03, 0x01, 0x00, 0xc8), new Uint8Array(20));
      p.close();
    }, {
      failure: "permanent",
      explanation: /closed by peer/,
      peerNodeId: CLAIMED,
    });
  });

  const tlsPeers: Array<[string, string]> = [
    ["a certificate from an unknown CA", "rogue"],
    ["an expired certificate", "expired"],
  ];
  for (const [what, name] of tlsPeers) {
    await t.step(`a TLS client with ${what}: PERMANENT certificate validation error`, async () => {
      await hostileCase(c, async (port) => {
        await using p = await RawPeer.connect(port);
        await upToTls(p);
        const ctx = createTlsContext({
          cert: fixture(`${name}.pem`),
          key: fixture(`${name}.key`),
          ca: fixture("ca.pem"),
        });
        // In TLS 1.3 the client may finish before the server judged its certificate: its
        // result does not matter, the node's verdict does.
        const s = await startTls({ reader: p.reader, write: (b) => p.send(b) }, "client", ctx)
          .catch(() => undefined);
        await s?.close();
      }, {
        failure: "permanent",
        explanation: /^Error during certificate validation error# /,
        peerNodeId: CLAIMED,
      });
    });
  }

  await t.step("a TLS client without a certificate: PERMANENT", async () => {
    await hostileCase(c, async (port) => {
      const p = await RawPeer.connect(port);
      await upToTls(p);
      assert.equal(p.reader.buffered, 0);
      // Deno's own TLS client, which sends no client certificate.
      const tls = await Deno.startTls(p.conn, {
        caCerts: [fixture("ca.pem")],
        unsafelyDisableHostnameVerification: true,
      }).catch(() => undefined);
      if (tls) {
        await tls.read(new Uint8Array(16)).catch(() => null);
        try {
          tls.close();
        } catch {
          // already closed
        }
      } else p.close();
    }, {
      failure: "permanent",
      explanation: "Error during certificate validation error# peer did not return a certificate",
      peerNodeId: CLAIMED,
    });
  });

  await t.step(
    "downgrade: a request without RequireEncryption gets the I17 error reply",
    async () => {
      const gist = "Peer did not request encryption, but it is required locally";
      await hostileCase(c, async (port) => {
        await using p = await RawPeer.connect(port);
        const id = hostileId(CLAIMED);
        await p.send(initialPacket(id), requestFrame(requestTo(L, id)));
        assert.equal((await readReply(p)).ErrorExplaination, gist);
        assert.ok((await p.readToEnd()).eof);
      }, { failure: "permanent", explanation: gist, peerNodeId: CLAIMED });
    },
  );
});

Deno.test('downgrade towards a dialer in REQUIRED mode: an acceptor claiming StartEncryption false fails O21 "Peer doesn\'t support encryption, which is required"', async () => {
  // Node 2 dials node 1, whose port is a scripted acceptor; node 3 is a real, good peer.
  using acceptor = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  await using c = await startNodes([2, 3], {
    absent: [1],
    ports: { 1: acceptor.addr.port },
    extra: (id) => ({
      ...TIMEOUT,
      encryption: "required",
      tls: tlsFixture(id === 2 ? "node-2" : "node-1"),
    }),
  });
  const script = (async () => {
    const conn = await acceptor.accept();
    const p = RawPeer.wrap(conn);
    try {
      await p.read(52);
      await p.send(V.V2); // the initiator sends its request only after this
      const header = await p.read(EXBLOCK_HEADER_SIZE);
      await p.read(new DataView(header.buffer, header.byteOffset).getUint32(4, true));
      const self = hostileId(1);
      await p.send(
        replyFrame({
          Success: {
            Protocol: 2n,
            ProgramPID: 1n,
            ProgramStartTime: 1n,
            Serial: self.localId,
            SenderActorId: self.toString(),
            ClusterUUIDs: { ClusterUUID: "" },
            StartEncryption: false,
            UseModernFrame: true,
            AuthOnly: false,
          },
        }),
      );
      return await p.readToEnd();
    } finally {
      p.close();
    }
  })();
  const dialer = c.node(2);
  const event = nextEvent(dialer, (e) => e.direction === "outgoing" && e.peerNodeId === 1);
  const gist = "Peer doesn't support encryption, which is required";
  await assert.rejects(dialer.connect(1), (e: unknown) => {
    assert.ok(e instanceof HandshakeError);
    assert.equal(e.failure, "permanent");
    assert.equal(e.explanation, gist);
    return true;
  });
  const f = failureOf(await event);
  assert.deepEqual([f.failure, f.explanation], ["permanent", gist]);
  assert.ok((await script).eof, "the dialer closed the connection");
  // The dialer is fine: a good peer still gets a TLS session.
  const s = await dialer.connect(3);
  assert.equal(s.params.encryption, true);
});
