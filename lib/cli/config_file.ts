/**
 * The CLI's JSON config file: the keys of {@link NodeConfig}, with `tls.cert`, `tls.key` and
 * `tls.ca` given as PEM file paths relative to the config file. Every problem is a
 * {@link ConfigError} that names the key and the value.
 * @module
 */
import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { ConfigError, type NodeConfig, validateConfig } from "../node/config.ts";

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;
const PEM_KEY = /-----BEGIN ((RSA |EC |ENCRYPTED )?PRIVATE KEY)-----[\s\S]+?-----END \1-----/;

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
      const { cert, key, ca } = t;
      // A wrong type is left to validateConfig, which names it.
      if (typeof cert === "string") t.cert = await readCertificates("tls.cert", path, cert);
      if (typeof ca === "string") t.ca = await readCertificates("tls.ca", path, ca);
      if (typeof key === "string") {
        const pem = await readPemFile("tls.key", path, key);
        const block = PEM_KEY.exec(pem)?.[0];
        if (!block) throw noPem("tls.key", key, "private key");
        let privateKey: KeyObject;
        try {
          privateKey = createPrivateKey(block);
        } catch (e) {
          throw new ConfigError("tls.key", `${JSON.stringify(key)}: ${oneLine(errorText(e))}`);
        }
        if (typeof cert === "string") {
          const leaf = new X509Certificate(firstCertificate(t.cert as string));
          if (!leaf.checkPrivateKey(privateKey)) {
            throw new ConfigError(
              "tls.key",
              `${JSON.stringify(key)} does not match the certificate in ${JSON.stringify(cert)}`,
            );
          }
        }
        t.key = pem;
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

async function readPemFile(key: string, configPath: string, given: string): Promise<string> {
  try {
    return await Deno.readTextFile(resolveRelative(configPath, given));
  } catch (e) {
    throw new ConfigError(key, `cannot read ${JSON.stringify(given)}: ${oneLine(errorText(e))}`);
  }
}

/** Reads a file of PEM certificates and checks that every one of them parses. */
async function readCertificates(key: string, configPath: string, given: string): Promise<string> {
  const pem = await readPemFile(key, configPath, given);
  const blocks = pem.match(PEM_CERT) ?? [];
  if (blocks.length === 0) throw noPem(key, given, "certificate");
  blocks.forEach((block, i) => {
    try {
      new X509Certificate(block);
    } catch (e) {
      const which = blocks.length > 1 ? ` (certificate ${i + 1})` : "";
      throw new ConfigError(
        key,
        `${JSON.stringify(given)}${which} does not parse: ${oneLine(errorText(e))}`,
      );
    }
  });
  return pem;
}

function firstCertificate(pem: string): string {
  return pem.match(PEM_CERT)![0];
}

function noPem(key: string, given: string, kind: string): ConfigError {
  return new ConfigError(key, `${JSON.stringify(given)} holds no PEM ${kind}`);
}

function oneLine(s: string): string {
  return s.replace(/\s*[\r\n]+\s*/g, " ").trim();
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
