/**
 * The node configuration: one object with the same keys as the CLI's JSON config file, and its
 * validation. Every error names the key and the bad value.
 * @module
 */
import { MAX_NODE_ID } from "../wire/actor_id.ts";
import type { EncryptionMode } from "../handshake/types.ts";

/** One entry of the static node table (spec 7). */
export interface NodeEntry {
  /** Node id, 1..1048575. */
  nodeId: number;
  /** Technical host name used in the handshake (SenderHostName / ReceiverHostName). */
  host: string;
  /** Interconnect port. */
  port: number;
  /** Literal IP address to dial; no DNS when set. */
  address?: string;
  /** Name to resolve by DNS when there is no `address`; defaults to `host`. */
  resolveHost?: string;
}

/** TLS material: PEM texts (the CLI reads them from files). */
export interface TlsConfig {
  /** Own certificate chain, leaf first (PEM). */
  cert: string;
  /** Own private key (PEM). */
  key: string;
  /** Trusted CA certificates (PEM). */
  ca: string;
  /** TlsAuthOnly: TLS authenticates, then the session continues in plain TCP. */
  authOnly?: boolean;
}

/** A node's configuration. */
export interface NodeConfig {
  /** Own node id, 1..1048575; must be in `nodes`. */
  nodeId: number;
  /** Where to listen; port 0 picks a free port. Omit to only dial. */
  listen?: { host: string; port: number };
  /** The static nameservice. */
  nodes: NodeEntry[];
  /** Own ClusterUUID. */
  clusterUUID?: string;
  /** Accepted ClusterUUIDs; empty accepts any. */
  acceptUUID?: string[];
  /** Own version tag; when set, version-tag checks are on. */
  versionTag?: string;
  /** Version tags this node accepts. */
  acceptedVersionTags?: string[];
  /** Cookie for the connect-back check; non-empty sends it and answers checks. */
  cookie?: string;
  /** Scope id as two u64 in decimal. */
  scopeId?: [string, string];
  /** Encryption policy; default "disabled". */
  encryption?: EncryptionMode;
  /** TLS material, required when encryption is not "disabled". */
  tls?: TlsConfig;
  /** Handshake timeout, ms; default 1000. The overall deadline is this + 2000. */
  handshakeTimeoutMs?: number;
  /** Ballast bytes in new-session requests; default 0. */
  ballastSize?: number;
}

/** A configuration error: names the key and the value. */
export class ConfigError extends Error {
  /** Always `"ConfigError"`. */
  override name = "ConfigError";
  /** `key` is the config key at fault (e.g. `nodes[2].port`); `message` says what is wrong. */
  constructor(readonly key: string, message: string) {
    super(`${key}: ${message}`);
  }
}

const TOP_KEYS = new Set([
  "nodeId",
  "listen",
  "nodes",
  "clusterUUID",
  "acceptUUID",
  "versionTag",
  "acceptedVersionTags",
  "cookie",
  "scopeId",
  "encryption",
  "tls",
  "handshakeTimeoutMs",
  "ballastSize",
]);
const U64_MAX = (1n << 64n) - 1n;

const SHOW_MAX = 120;

/** A value as it appears in an error message: JSON, on one line, cut after SHOW_MAX chars. */
function show(v: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(v) ?? String(v);
  } catch {
    text = String(v);
  }
  text = text.replace(/[\r\n]/g, (c) => (c === "\n" ? "\\n" : "\\r"));
  return text.length > SHOW_MAX ? `${text.slice(0, SHOW_MAX)}...` : text;
}

/** A key of a config object as part of a key path: bare when it is an identifier. */
function keyPath(parent: string, k: string): string {
  const name = /^[A-Za-z_$][\w$]*$/.test(k) ? k : show(k);
  return parent ? `${parent}.${name}` : name;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function onlyKeys(key: string, obj: Record<string, unknown>, allowed: Set<string>): void {
  for (const k of Object.keys(obj)) {
    if (!allowed.has(k)) {
      throw new ConfigError(keyPath(key, k), `unknown key (its value is ${show(obj[k])})`);
    }
  }
}

function int(key: string, v: unknown, min: number, max: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    throw new ConfigError(key, `${show(v)} is not an integer in ${min}..${max}`);
  }
  return v;
}

function str(key: string, v: unknown): string {
  if (typeof v !== "string") throw new ConfigError(key, `${show(v)} is not a string`);
  return v;
}

function strList(key: string, v: unknown): string[] {
  if (!Array.isArray(v)) throw new ConfigError(key, `${show(v)} is not an array of strings`);
  return v.map((x, i) => str(`${key}[${i}]`, x));
}

/**
 * Checks an untrusted config object (for example parsed JSON) and returns it typed. Throws
 * {@link ConfigError} naming the first bad key and value.
 */
export function validateConfig(raw: unknown): NodeConfig {
  if (!isObject(raw)) throw new ConfigError("config", `${show(raw)} is not an object`);
  onlyKeys("", raw, TOP_KEYS);
  const nodeId = int("nodeId", raw.nodeId, 1, MAX_NODE_ID);
  const config: NodeConfig = { nodeId, nodes: [] };
  if (raw.listen !== undefined) {
    if (!isObject(raw.listen)) {
      throw new ConfigError("listen", `${show(raw.listen)} is not an object`);
    }
    onlyKeys("listen", raw.listen, new Set(["host", "port"]));
    config.listen = {
      host: str("listen.host", raw.listen.host),
      port: int("listen.port", raw.listen.port, 0, 65535),
    };
  }
  if (!Array.isArray(raw.nodes)) {
    throw new ConfigError("nodes", `${show(raw.nodes)} is not an array`);
  }
  const entryKeys = new Set(["nodeId", "host", "port", "address", "resolveHost"]);
  config.nodes = raw.nodes.map((e, i) => {
    const key = `nodes[${i}]`;
    if (!isObject(e)) throw new ConfigError(key, `${show(e)} is not an object`);
    onlyKeys(key, e, entryKeys);
    const entry: NodeEntry = {
      nodeId: int(`${key}.nodeId`, e.nodeId, 1, MAX_NODE_ID),
      host: str(`${key}.host`, e.host),
      port: int(`${key}.port`, e.port, 1, 65535),
    };
    if (e.address !== undefined) entry.address = str(`${key}.address`, e.address);
    if (e.resolveHost !== undefined) entry.resolveHost = str(`${key}.resolveHost`, e.resolveHost);
    return entry;
  });
  checkNodeTable(config.nodes);
  if (!config.nodes.some((n) => n.nodeId === nodeId)) {
    throw new ConfigError("nodeId", `${nodeId} is not in nodes`);
  }
  if (raw.clusterUUID !== undefined) config.clusterUUID = str("clusterUUID", raw.clusterUUID);
  if (raw.acceptUUID !== undefined) config.acceptUUID = strList("acceptUUID", raw.acceptUUID);
  if (raw.versionTag !== undefined) config.versionTag = str("versionTag", raw.versionTag);
  if (raw.acceptedVersionTags !== undefined) {
    config.acceptedVersionTags = strList("acceptedVersionTags", raw.acceptedVersionTags);
  }
  if (raw.cookie !== undefined) config.cookie = str("cookie", raw.cookie);
  if (raw.scopeId !== undefined) {
    const s = raw.scopeId;
    if (!Array.isArray(s) || s.length !== 2) {
      throw new ConfigError("scopeId", `${show(s)} is not a pair of decimal u64 strings`);
    }
    config.scopeId = [u64Text("scopeId[0]", s[0]), u64Text("scopeId[1]", s[1])];
  }
  if (raw.encryption !== undefined) {
    if (
      raw.encryption !== "disabled" && raw.encryption !== "optional" &&
      raw.encryption !== "required"
    ) {
      throw new ConfigError(
        "encryption",
        `${show(raw.encryption)} is not one of "disabled", "optional", "required"`,
      );
    }
    config.encryption = raw.encryption;
  }
  if (raw.tls !== undefined) {
    const t = raw.tls;
    if (!isObject(t)) throw new ConfigError("tls", `${show(t)} is not an object`);
    onlyKeys("tls", t, new Set(["cert", "key", "ca", "authOnly"]));
    config.tls = {
      cert: str("tls.cert", t.cert),
      key: str("tls.key", t.key),
      ca: str("tls.ca", t.ca),
    };
    if (t.authOnly !== undefined) {
      if (typeof t.authOnly !== "boolean") {
        throw new ConfigError("tls.authOnly", `${show(t.authOnly)} is not a boolean`);
      }
      config.tls.authOnly = t.authOnly;
    }
  }
  if ((config.encryption ?? "disabled") !== "disabled" && !config.tls) {
    throw new ConfigError("tls", `is required when encryption is ${show(config.encryption)}`);
  }
  if (raw.handshakeTimeoutMs !== undefined) {
    config.handshakeTimeoutMs = int("handshakeTimeoutMs", raw.handshakeTimeoutMs, 1, 3_600_000);
  }
  if (raw.ballastSize !== undefined) {
    // The request must fit one ExBlock (1 MiB) with the other fields.
    config.ballastSize = int("ballastSize", raw.ballastSize, 0, (1 << 20) - 4096);
  }
  return config;
}

function u64Text(key: string, v: unknown): string {
  if (typeof v !== "string" || !/^[0-9]{1,20}$/.test(v) || BigInt(v) > U64_MAX) {
    throw new ConfigError(key, `${show(v)} is not a decimal u64 string`);
  }
  return v;
}

/**
 * The nameservice's uniqueness checks (spec 7): node ids unique; (address, port) unique among
 * entries with an address; (resolveHost, port) unique.
 */
export function checkNodeTable(nodes: readonly NodeEntry[]): void {
  const ids = new Set<number>();
  const addrs = new Map<string, number>();
  const names = new Map<string, number>();
  nodes.forEach((n, i) => {
    if (ids.has(n.nodeId)) {
      throw new ConfigError(`nodes[${i}].nodeId`, `${n.nodeId} appears twice`);
    }
    ids.add(n.nodeId);
    if (n.address) {
      const k = `${n.address}:${n.port}`;
      if (addrs.has(k)) {
        throw new ConfigError(
          `nodes[${i}].address`,
          `${show(n.address)} port ${n.port} is also node ${addrs.get(k)}'s`,
        );
      }
      addrs.set(k, n.nodeId);
    }
    const k = `${n.resolveHost ?? n.host}:${n.port}`;
    if (names.has(k)) {
      throw new ConfigError(
        `nodes[${i}].resolveHost`,
        `${show(n.resolveHost ?? n.host)} port ${n.port} is also node ${names.get(k)}'s`,
      );
    }
    names.set(k, n.nodeId);
  });
}
