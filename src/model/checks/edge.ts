// The edge phase's inputs that are not in the spec's shape: with edge hosts, Traefik needs
// a binary (edge.traefikBinary: no package has it), and either engine needs the origin
// certificate in the state directory. Without them `fmc apply` stops at the edge phase, so
// validate says so early, as warnings: render and the other phases don't need them.
import type { Checker } from "./context.js";
import type { KeyReader } from "./ssh-keys.js";

/** Where the edge phase reads the origin certificate: the state directory next to the spec (src/engine/inventory.ts). */
const ORIGIN_CERT_FILES = [".fmc/tls/origin.pem", ".fmc/tls/origin-key.pem"] as const;
/** A lab's inventory: while it exists, the lab's own certificate is used. */
const LAB_INVENTORY = ".fmc/lab/inventory.json";

/**
 * `readFile` reads a file relative to the spec's directory (the loader's key-file reader);
 * without one (a spec loaded from text alone) the certificate is not looked for.
 */
export function checkEdge(c: Checker, readFile: KeyReader | undefined): void {
  const { spec, warn } = c;
  if (!spec.hosts.some((h) => h.roles.includes("edge"))) return;
  if (spec.edge.engine === "traefik" && !spec.edge.traefikBinary) {
    warn(
      "edge.traefikBinary",
      "edge.engine is traefik but no Traefik binary is configured: fmc apply stops at the edge phase (Traefik has no package to install)",
      "set edge.traefikBinary.path (a binary on this machine) or edge.traefikBinary.url (a release archive), with its sha256; or use edge.engine: haproxy",
    );
  }
  if (!readFile) return;
  const found = (path: string) => {
    try {
      return readFile(path) !== undefined;
    } catch {
      return true; // there but unreadable here: the edge phase says why
    }
  };
  if (found(LAB_INVENTORY)) return;
  const missing = ORIGIN_CERT_FILES.filter((f) => !found(f));
  if (missing.length) {
    warn(
      "edge",
      `no origin certificate: ${missing.join(" and ")} ${missing.length === 1 ? "is" : "are"} missing next to the spec, so fmc apply stops at the edge phase (the edge proxies serve the public names over TLS)`,
      "put the Cloudflare Origin CA certificate and its key at .fmc/tls/origin.pem and .fmc/tls/origin-key.pem (in the lab, fmc lab up issues one from the lab CA)",
    );
  }
}
