/**
 * Command line of ic-handshake. Until the node runtime exists, `demo` shows the wire core:
 * it builds the new-session exchange of spec 1.2 from node 1 to node 2 and prints each
 * message's bytes and decoded fields.
 * @module
 */
import {
  ActorId,
  decodeExBlock,
  decodeHandshakeRequest,
  decodeInitialPacket,
  encodeExBlock,
  encodeHandshakeRequest,
  encodeInitialPacket,
  verifyInitialPacket,
} from "./mod.ts";

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function demo(): void {
  const a = ActorId.plain(1, (0x62000000n << 32n) | 1n);
  const request = encodeInitialPacket({
    selfVirtualId: a,
    peerVirtualId: ActorId.EMPTY,
    nextPacket: 0n,
  });
  const decoded = decodeInitialPacket(request);
  console.log("initial packet, node 1 -> node 2 (52 bytes):");
  console.log(`  ${hex(request)}`);
  console.log(
    `  self ${decoded.selfVirtualId} peer ${decoded.peerVirtualId} verdict ${
      JSON.stringify(verifyInitialPacket(decoded))
    }`,
  );
  const frame = encodeExBlock(encodeHandshakeRequest({
    Protocol: 2n,
    ProgramPID: BigInt(Deno.pid),
    ProgramStartTime: 1000000n,
    Serial: a.localId,
    ReceiverNodeId: 2,
    SenderActorId: a.toString(),
    SenderHostName: "host-a",
    ReceiverHostName: "host-b",
    ClusterUUIDs: { ClusterUUID: "" },
    RequestModernFrame: true,
    RequestAuthOnly: false,
  }));
  console.log(`ExBlock THandshakeRequest (${frame.length} bytes):`);
  console.log(`  ${hex(frame)}`);
  const back = decodeHandshakeRequest(decodeExBlock(frame).payload);
  console.log(`  SenderActorId ${back.SenderActorId} ReceiverNodeId ${back.ReceiverNodeId}`);
}

const usage = `usage: deno task ic <command>

commands:
  demo     show the bytes of a new-session handshake request
`;

if (import.meta.main) {
  const [command] = Deno.args;
  if (command === "demo") {
    demo();
  } else if (command === "--help" || command === "-h" || command === undefined) {
    console.log(usage);
  } else {
    console.error(`unknown command: ${command}\n${usage}`);
    Deno.exit(2);
  }
}
