/**
 * The nameservice (spec 7): node records (TEvGetNode) and address resolution (TEvResolveNode).
 * The static table answers from the config; a literal `address` is used without DNS, otherwise
 * `resolveHost` (default `host`) is looked up with `Deno.resolveDns`. A dynamic nameservice can
 * be plugged in by implementing {@link Nameservice}.
 * @module
 */
import type { NodeInfo, ResolvedAddress } from "../handshake/types.ts";
import { checkNodeTable, type NodeEntry } from "./config.ts";

/** What a node needs from a nameservice. */
export interface Nameservice {
  /** The record of a node, or undefined if unknown. */
  nodeInfo(nodeId: number): Promise<NodeInfo | undefined>;
  /**
   * The address to dial, or undefined for an unknown node; rejects with the resolver's
   * explanation. The caller bounds the wait (1 s) and falls back to the static address.
   */
  resolve(nodeId: number, signal?: AbortSignal): Promise<ResolvedAddress | undefined>;
}

/** A literal IPv4 or IPv6 address (no DNS needed). */
export function isLiteralAddress(s: string): boolean {
  if (/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.test(s)) {
    return s.split(".").every((p) => Number(p) <= 255);
  }
  return s.includes(":") && /^[0-9a-fA-F:.]+$/.test(s);
}

/** Looks a name up by DNS: A and AAAA, first answer wins (YDB takes one address). */
export type DnsLookup = (name: string, signal?: AbortSignal) => Promise<string[]>;

/** `Deno.resolveDns` for A and AAAA records; "localhost" maps to 127.0.0.1 without a query. */
export async function denoDnsLookup(name: string, signal?: AbortSignal): Promise<string[]> {
  if (name === "localhost") return ["127.0.0.1"];
  const results = await Promise.allSettled([
    Deno.resolveDns(name, "A", { signal }),
    Deno.resolveDns(name, "AAAA", { signal }),
  ]);
  const out: string[] = [];
  for (const r of results) if (r.status === "fulfilled") out.push(...r.value);
  if (out.length > 0) return out;
  const firstError = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
  throw firstError.reason;
}

/** The static table nameservice. */
export class StaticNameservice implements Nameservice {
  readonly #table = new Map<number, NodeEntry>();

  /**
   * Checks the table's uniqueness rules and keeps a copy. `lookup` resolves names that have no
   * literal address (default: {@link denoDnsLookup}).
   */
  constructor(nodes: readonly NodeEntry[], readonly lookup: DnsLookup = denoDnsLookup) {
    checkNodeTable(nodes);
    for (const n of nodes) this.#table.set(n.nodeId, { ...n });
  }

  nodeInfo(nodeId: number): Promise<NodeInfo | undefined> {
    return Promise.resolve(this.#table.get(nodeId));
  }

  async resolve(nodeId: number, signal?: AbortSignal): Promise<ResolvedAddress | undefined> {
    const n = this.#table.get(nodeId);
    if (!n) return undefined;
    if (n.address) {
      if (!isLiteralAddress(n.address)) {
        throw new Error(`Unsupported default address: ${n.address}`);
      }
      return { address: n.address, port: n.port };
    }
    if (signal?.aborted) throw new Error("Deadline");
    const name = n.resolveHost ?? n.host;
    if (isLiteralAddress(name)) return { address: name, port: n.port };
    const addresses = await this.lookup(name, signal);
    return addresses.length > 0 ? { address: addresses[0], port: n.port } : undefined;
  }
}
