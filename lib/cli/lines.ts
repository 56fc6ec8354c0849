/**
 * The CLI's JSON lines: exactly one object per line on stdout. u64 values are decimal strings.
 * @module
 */
import type { HandshakeEvent } from "../node/node.ts";

/** `{"event":"listening",...}` once the socket is bound. */
export function listeningLine(nodeId: number, host: string, port: number): string {
  return JSON.stringify({ event: "listening", nodeId, host, port });
}

/** The `handshake` line of a finished handshake, success or failure. */
export function handshakeLine(e: HandshakeEvent): string {
  if (!e.ok) {
    return JSON.stringify({
      event: "handshake",
      direction: e.direction,
      ok: false,
      peerNodeId: e.peerNodeId,
      continuation: e.continuation,
      failure: e.failure,
      explanation: e.explanation,
      durationMs: round(e.durationMs),
    });
  }
  const s = e.session;
  const p = s.params;
  const program = e.program;
  return JSON.stringify({
    event: "handshake",
    direction: e.direction,
    ok: true,
    peerNodeId: e.peerNodeId,
    continuation: e.continuation,
    selfVirtualId: s.selfVirtualId.toString(),
    peerVirtualId: s.peerVirtualId.toString(),
    nextPacketFromPeer: s.nextPacketFromPeer.toString(),
    params: {
      encryption: p.encryption,
      authOnly: p.authOnly,
      authCN: p.authCN,
      useModernFrame: p.useModernFrame,
      peerScopeId: [p.peerScopeId[0].toString(), p.peerScopeId[1].toString()],
    },
    program: program
      ? {
        pid: program.pid.toString(),
        startTime: program.startTime.toString(),
        serial: program.serial.toString(),
      }
      : null,
    durationMs: round(e.durationMs),
  });
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
