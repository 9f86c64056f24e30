// SSH keys: every key in the spec is an OpenSSH public key or a file holding one, and
// every host has at least one key (or fmc's generated admin key) to log in with.
import { existsSync } from "node:fs";
import type { Checker, Report } from "./context.js";

/** Reads a public-key file named in the spec; returns undefined when it does not exist. */
export type KeyReader = (path: string) => string | undefined;

// the comment is printable text: key files are read from disk, past the spec's own checks
const KEY = /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,3}( [^\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]*)?$/;

export function isPublicKey(text: string): boolean {
  return KEY.test(text.trim());
}

export function checkSshKeys(c: Checker, readKeyFile: KeyReader | undefined): void {
  const { spec, err } = c;
  const globalKeys = checkKeys(spec.ssh.keys, "ssh.keys", readKeyFile, err);
  spec.hosts.forEach((h, i) => {
    const own = checkKeys(h.ssh?.keys ?? [], `hosts[${i}].ssh.keys`, readKeyFile, err);
    if (globalKeys + own === 0 && !spec.ssh.generatedKey) {
      err(`hosts[${i}].ssh.keys`, `no SSH key for ${h.name}: nobody could log in`, "add a key to ssh.keys or set ssh.generatedKey: true");
    }
  });
}

/** Checks a list of keys; returns how many are usable. */
function checkKeys(keys: readonly string[], path: string, read: KeyReader | undefined, err: Report): number {
  let n = 0;
  keys.forEach((k, i) => {
    if (isPublicKey(k)) return void n++;
    if (/^(~|\.|\/)/.test(k)) {
      let text: string | undefined;
      try {
        text = read ? read(k) : existsSync(k) ? "" : undefined;
      } catch (e) {
        return void err(`${path}[${i}]`, (e as Error).message, (e as { hint?: string }).hint);
      }
      if (text === undefined) err(`${path}[${i}]`, `key file ${k} does not exist`);
      else if (read && !text.split("\n").some((l) => isPublicKey(l))) err(`${path}[${i}]`, `${k} holds no OpenSSH public key`);
      else n++;
      return;
    }
    err(`${path}[${i}]`, "not an OpenSSH public key or a path to one", 'expected "ssh-ed25519 AAAA… comment" or "~/.ssh/id_ed25519.pub"');
  });
  return n;
}
