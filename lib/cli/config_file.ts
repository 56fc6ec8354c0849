/**
 * The CLI's JSON config file: the keys of {@link NodeConfig}, with `tls.cert`, `tls.key` and
 * `tls.ca` given as PEM file paths relative to the config file. Every problem is a
 * {@link ConfigError} that names the key and the value.
 * @module
 */
import { ConfigError, type NodeConfig, validateConfig } from "../node/config.ts";

const PEM_LABELS: Record<string, RegExp> = {
  cert: /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/,
  key: /-----BEGIN ((RSA |EC |ENCRYPTED )?PRIVATE KEY)-----[\s\S]+?-----END \1-----/,
  ca: /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/,
};

/** Reads and validates a config file. */
export async function loadConfigFile(path: string): Promise<NodeConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new ConfigError("config", `cannot read ${JSON.stringify(path)}: ${errorText(e)}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError("config", `${JSON.stringify(path)} is not valid JSON: ${errorText(e)}`);
  }
  if (typeof raw === "object" && raw !== null && !Array.isArray(raw)) {
    const obj = raw as Record<string, unknown>;
    const tls = obj.tls;
    if (typeof tls === "object" && tls !== null && !Array.isArray(tls)) {
      const t = { ...(tls as Record<string, unknown>) };
      for (const k of ["cert", "key", "ca"]) {
        const v = t[k];
        if (typeof v !== "string") continue; // validateConfig names the bad type
        t[k] = await readPem(`tls.${k}`, resolveRelative(path, v), PEM_LABELS[k], v);
      }
      obj.tls = t;
    }
  }
  return validateConfig(raw);
}

function resolveRelative(configPath: string, p: string): string {
  if (p.startsWith("/")) return p;
  const dir = configPath.includes("/") ? configPath.slice(0, configPath.lastIndexOf("/")) : ".";
  return `${dir}/${p}`;
}

async function readPem(key: string, path: string, pattern: RegExp, given: string): Promise<string> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new ConfigError(key, `cannot read ${JSON.stringify(given)}: ${errorText(e)}`);
  }
  if (!pattern.test(text)) {
    throw new ConfigError(
      key,
      `${JSON.stringify(given)} holds no valid PEM block of the right kind`,
    );
  }
  return text;
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
