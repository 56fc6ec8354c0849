/**
 * The cross-node policy checks of spec 4.3 and the encryption matrix of 5.1, as pure
 * functions that return an explanation on failure and `undefined` on success.
 * @module
 */
import type { ClusterUUIDs } from "../wire/messages.ts";
import type { EncryptionMode } from "./types.ts";

function formatList(list: readonly string[]): string {
  return `[${list.join(" ")}]`;
}

/**
 * ClusterUUID check (spec 4.3). `legacyUUID` is given only on the incoming side: the request's
 * `UUID` field ("" when absent), used when the peer sent no ClusterUUIDs.
 */
export function checkClusterUUID(
  local: { clusterUUID: string; acceptUUID: readonly string[] },
  peer: ClusterUUIDs | undefined,
  legacyUUID?: string,
): string | undefined {
  if (local.acceptUUID.length === 0) return undefined; // promiscuous
  if (peer === undefined) {
    if (legacyUUID !== undefined && !local.acceptUUID.includes(legacyUUID)) {
      return `Peer ClusterUUID# ${legacyUUID} mismatch, AcceptUUID# ${
        formatList(local.acceptUUID)
      }`;
    }
    return undefined;
  }
  if ((peer.AcceptUUID ?? []).includes(local.clusterUUID)) return undefined;
  const remote = peer.ClusterUUID ?? "";
  if (local.acceptUUID.includes(remote)) return undefined;
  return `Peer ClusterUUID# ${remote} mismatch, AcceptUUID# ${formatList(local.acceptUUID)}`;
}

/** What the version-tag check decided. */
export type VersionTagVerdict =
  | { readonly ok: true; readonly peerReportedNoTag: boolean }
  | { readonly ok: false; readonly explanation: string };

/**
 * Version-tag check (spec 4.3), only when the local tag is configured. An empty local accepted
 * set does NOT accept everything: it falls through to the peer's list, as the C++ code does.
 */
export function checkVersionTag(
  local: { versionTag?: string; acceptedVersionTags: readonly string[] },
  peer: { VersionTag?: string; AcceptedVersionTags?: string[] },
): VersionTagVerdict {
  if (local.versionTag === undefined) return { ok: true, peerReportedNoTag: false };
  if (peer.VersionTag === undefined) return { ok: true, peerReportedNoTag: true };
  if (local.acceptedVersionTags.includes(peer.VersionTag)) {
    return { ok: true, peerReportedNoTag: false };
  }
  const peerAccepted = peer.AcceptedVersionTags ?? [];
  if (peerAccepted.includes(local.versionTag)) return { ok: true, peerReportedNoTag: false };
  return {
    ok: false,
    explanation:
      `local/peer version tags did not match accepted ones local Tag# ${local.versionTag}` +
      ` accepted Tags# ${formatList(sortedTags(local.acceptedVersionTags))}` +
      ` peer Tag# ${peer.VersionTag} accepted Tags# ${formatList(peerAccepted)}`,
  };
}

/** The local accepted tags in the order a C++ `std::set<TString>` iterates: bytewise sorted. */
export function sortedTags(tags: readonly string[]): string[] {
  const enc = new TextEncoder();
  return [...new Set(tags)].sort((a, b) => compareBytes(enc.encode(a), enc.encode(b)));
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/** RequireEncryption as the initiator writes it: absent / false / true. */
export function requireEncryptionField(mode: EncryptionMode): boolean | undefined {
  switch (mode) {
    case "disabled":
      return undefined;
    case "optional":
      return false;
    case "required":
      return true;
  }
}

/**
 * The acceptor's decision (spec 5.1): presence, not value, decides in OPTIONAL mode. Returns
 * the negotiated flag, or the explanation of I16 / I17.
 */
export function acceptorEncryption(
  mode: EncryptionMode,
  requireEncryption: boolean | undefined,
): { ok: true; encryption: boolean } | { ok: false; explanation: string } {
  switch (mode) {
    case "disabled":
      return requireEncryption === true
        ? { ok: false, explanation: "Peer requested encryption, but it is disabled locally" }
        : { ok: true, encryption: false };
    case "optional":
      return { ok: true, encryption: requireEncryption !== undefined };
    case "required":
      return requireEncryption === undefined
        ? { ok: false, explanation: "Peer did not request encryption, but it is required locally" }
        : { ok: true, encryption: true };
  }
}

/** Ballast of `size` bytes: byte i = i mod 256. */
export function makeBallast(size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = i & 0xff;
  return out;
}
