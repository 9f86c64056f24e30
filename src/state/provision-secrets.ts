// The secrets fmc provision hands to Terraform, only ever through its environment
// (TF_VAR_…), never on a command line: the Cloudflare API token, which the operator
// stores once (fmc provision secret set reads it from stdin), and the OpenTofu state
// passphrase, which fmc generates on first use. They live beside the generated secrets,
// in <stateDir>/provisioning-secrets.json, mode 0600, replaced atomically under the
// secrets lock.
import { randomBytes } from "node:crypto";
import { chmodSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { FmcError } from "../errors.js";
import { acquireLock } from "./lock.js";
import { parseStored } from "./stored.js";
import { openStateDir, readStateFile, stateFileIo } from "./dir.js";

export const PROVISION_SECRETS = {
  "cloudflare-api-token": {
    purpose: "Cloudflare API token for the cloudflare module (Zone:DNS:Edit, which covers DNSSEC, and Zone:Zone Settings:Edit on the zone)",
    format: /^[A-Za-z0-9_.-]{20,512}$/,
    formatText: "20 to 512 of A-Z a-z 0-9 _ . -",
  },
  "state-passphrase": {
    purpose: "OpenTofu state encryption passphrase (provisioning.stateEncryption); without it the state can't be read",
    format: /^[\x21-\x7e]{16,1024}$/,
    formatText: "16 to 1024 printable characters without spaces",
  },
} as const;
export type ProvisionSecretName = keyof typeof PROVISION_SECRETS;
export const PROVISION_SECRET_NAMES = Object.keys(PROVISION_SECRETS) as ProvisionSecretName[];

const FILE = "provisioning-secrets.json";

const Store = z.object({
  version: z.literal(1),
  secrets: z.record(z.string(), z.string()).superRefine((s, ctx) => {
    for (const [name, value] of Object.entries(s)) {
      const spec = PROVISION_SECRETS[name as ProvisionSecretName];
      if (!spec) ctx.addIssue({ code: "custom", path: [name], message: "is not a secret fmc provision keeps" });
      else if (!spec.format.test(value)) ctx.addIssue({ code: "custom", path: [name], message: `is not ${spec.formatText}` });
    }
  }),
});

export const provisionSecretsFile = (stateDir: string) => join(stateDir, FILE);


/** The stored provisioning secrets (none when the file does not exist yet). */
export function readProvisionSecrets(stateDir: string): Partial<Record<ProvisionSecretName, string>> {
  const file = provisionSecretsFile(stateDir);
  const text = readStateFile(stateDir, file, "provisioning secret store");
  if (text === undefined) return {};
  const parsed = parseStored(text, Store, (why) => new FmcError("STATE_CORRUPT", `${file} is not a store fmc wrote: ${why}`, "restore it from a backup, or set the secrets again with fmc provision secret set NAME"));
  return parsed.secrets as Partial<Record<ProvisionSecretName, string>>;
}

/** A name fmc provision keeps a secret under, or a coded error listing them. */
export function checkProvisionSecretName(name: string): asserts name is ProvisionSecretName {
  if (!(PROVISION_SECRET_NAMES as string[]).includes(name)) throw new FmcError("SECRET_UNKNOWN", `fmc provision keeps no secret named ${name}`, `known: ${PROVISION_SECRET_NAMES.join(", ")}`);
}

/** A value fmc would store under that name, or a coded error saying what is wrong with it. */
function checkProvisionSecret(name: string, value: string): asserts name is ProvisionSecretName {
  checkProvisionSecretName(name);
  const spec = PROVISION_SECRETS[name];
  if (!spec.format.test(value)) throw new FmcError("SECRET_FORMAT", `that ${name} is not ${spec.formatText} (${value.length} characters given)`, "check what you piped in: one value, no quotes");
}

function update(stateDir: string, change: (current: Partial<Record<ProvisionSecretName, string>>) => Partial<Record<ProvisionSecretName, string>> | undefined): Partial<Record<ProvisionSecretName, string>> {
  openStateDir(stateDir);
  const lock = acquireLock(stateDir, "secrets", 10_000);
  try {
    const current = readProvisionSecrets(stateDir);
    const next = change(current);
    if (!next) return current;
    const file = provisionSecretsFile(stateDir);
    const tmp = `${file}.tmp-${process.pid}`;
    const sorted = Object.fromEntries(Object.entries(next).sort(([a], [b]) => a.localeCompare(b)));
    stateFileIo(tmp, "write", () => writeFileSync(tmp, JSON.stringify({ version: 1, secrets: sorted }, null, 2) + "\n", { mode: 0o600 }));
    stateFileIo(tmp, "secure", () => chmodSync(tmp, 0o600));
    stateFileIo(file, "replace", () => renameSync(tmp, file));
    return next;
  } finally {
    lock.release();
  }
}

/** Stores (or replaces) one provisioning secret. */
export function setProvisionSecret(stateDir: string, name: string, value: string): void {
  checkProvisionSecret(name, value);
  update(stateDir, (current) => ({ ...current, [name]: value }));
}

/** The OpenTofu state passphrase: the stored one, else a new one (32 random bytes, base64url) stored first. */
export function statePassphrase(stateDir: string): { value: string; generated: boolean } {
  const stored = readProvisionSecrets(stateDir)["state-passphrase"];
  if (stored) return { value: stored, generated: false };
  let generated = false;
  const after = update(stateDir, (current) => {
    if (current["state-passphrase"]) return undefined; // another fmc made one meanwhile
    generated = true;
    return { ...current, "state-passphrase": randomBytes(32).toString("base64url") };
  });
  return { value: after["state-passphrase"]!, generated };
}
