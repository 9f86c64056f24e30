// A K3s bundle: the files a cluster installs from when its nodes can't (or shouldn't)
// download them. `fmc bundle` assembles one; the k3s phases upload the binary from it
// instead of letting each node fetch it from GitHub. Layout of a bundle directory:
//
//   bundle.json            what is in it, written last (a bundle without it is unfinished)
//   k3s                    the binary (amd64)
//   sha256sum-amd64.txt    the release's own checksum file, as published
//   k3s-airgap-images-amd64.tar.zst|.tar.gz   optional: images for nodes without a registry
//   install.sh             optional: get.k3s.io's script, kept for reference and uninstalling
//
// Every file's SHA-256 is in bundle.json and is checked again when the bundle is read
// (reading is how apply uses it), and the binary's and images' hashes must equal the
// release checksum file's lines for them. All of that only says the files are the ones the
// bundle was assembled from: when the spec pins k3s.sha256, the binary must also be that one
// wherever it is installed (checkBundlePin), and the node hashes what arrived again.
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { FmcError } from "../errors.js";
import { parseStored } from "../state/stored.js";
import { sha256FileSync } from "./digest.js";

export const BUNDLE_MANIFEST = "bundle.json";
export const RELEASE_CHECKSUMS = "sha256sum-amd64.txt";
export const BUNDLE_FILES = ["k3s", RELEASE_CHECKSUMS, "k3s-airgap-images-amd64.tar.zst", "k3s-airgap-images-amd64.tar.gz", "install.sh"] as const;
export type BundleFile = (typeof BUNDLE_FILES)[number];

const Sha = z.string().regex(/^[0-9a-f]{64}$/);
const Manifest = z.strictObject({
  version: z.literal(1),
  /** The K3s release, as the spec pins it. */
  k3sVersion: z.string().regex(/^v\d+\.\d+\.\d+\+k3s\d+$/),
  arch: z.literal("amd64"),
  files: z.partialRecord(z.enum(BUNDLE_FILES), z.strictObject({ sha256: Sha, bytes: z.number().int().nonnegative() })),
  createdAt: z.string().min(1).max(64),
  /** Where the files came from (for people): "downloaded from …" or "given by the user". */
  source: z.string().max(500),
});
export type BundleManifest = z.infer<typeof Manifest>;

export interface K3sBundle {
  readonly dir: string;
  readonly manifest: BundleManifest;
  /** The binary's path and checksum: what the phases upload and check again on the node. */
  readonly binary: { readonly path: string; readonly sha256: string; readonly bytes: number };
}

/** Parses a release checksum file ("<sha256>  <name>" lines) into name → sha256. */
export function parseReleaseChecksums(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    const m = /^([0-9a-f]{64})\s+\*?(\S+)\s*$/.exec(line.trim());
    if (m) out.set(m[2]!, m[1]!);
  }
  return out;
}

const refuse = (dir: string, why: string, hint = `assemble it again with fmc bundle -o ${dir}`) => new FmcError("BUNDLE", `the K3s bundle in ${dir} can't be used: ${why}`, hint);

/**
 * Reads a bundle and checks it: its manifest, every listed file's size and SHA-256, and
 * the binary's (and images') hash against the release checksum file inside it. Pass the
 * version the spec pins: a bundle of another release is refused.
 */
export function readBundle(dir: string, k3sVersion: string, pinnedSha256?: string): K3sBundle {
  const mf = join(dir, BUNDLE_MANIFEST);
  if (!existsSync(mf)) throw refuse(dir, `${BUNDLE_MANIFEST} is missing (an unfinished bundle, or not a bundle)`);
  const manifest = parseStored(readFileSync(mf, "utf8"), Manifest, (why) => refuse(dir, `${BUNDLE_MANIFEST}: ${why}`));
  if (manifest.k3sVersion !== k3sVersion) throw refuse(dir, `it holds K3s ${manifest.k3sVersion}, the spec pins ${k3sVersion}`, `fmc bundle --version ${k3sVersion} -o ${dir}, or pin ${manifest.k3sVersion} in the spec`);
  for (const need of ["k3s", RELEASE_CHECKSUMS] as const) if (!manifest.files[need]) throw refuse(dir, `${need} is not in it`);
  for (const [name, f] of Object.entries(manifest.files)) {
    const p = join(dir, name);
    if (!existsSync(p)) throw refuse(dir, `${name} is listed but missing`);
    if (statSync(p).size !== f.bytes) throw refuse(dir, `${name} has ${statSync(p).size} bytes, the manifest says ${f.bytes}`);
    const got = sha256FileSync(p);
    if (got !== f.sha256) throw refuse(dir, `${name}'s SHA-256 is ${got}, the manifest says ${f.sha256} (changed since it was assembled)`);
  }
  const release = parseReleaseChecksums(readFileSync(join(dir, RELEASE_CHECKSUMS), "utf8"));
  for (const name of ["k3s", "k3s-airgap-images-amd64.tar.zst", "k3s-airgap-images-amd64.tar.gz"] as const) {
    const f = manifest.files[name];
    if (!f) continue;
    const want = release.get(name);
    if (!want) throw refuse(dir, `${RELEASE_CHECKSUMS} has no line for ${name}`);
    if (want !== f.sha256) throw refuse(dir, `${name}'s SHA-256 ${f.sha256} is not the release's ${want}`, "the file is not the one K3s published for this version: get it again");
  }
  const bin = manifest.files.k3s!;
  return checkBundlePin({ dir, manifest, binary: { path: join(dir, "k3s"), sha256: bin.sha256, bytes: bin.bytes } }, pinnedSha256);
}

/**
 * The bundle held against the spec: when k3s.sha256 pins the version it holds, its binary
 * must be that one. A bundle's own checksum file and manifest can be replaced together; the
 * spec's pin is the value the user chose to trust.
 */
export function checkBundlePin(bundle: K3sBundle, pinnedSha256: string | undefined): K3sBundle {
  if (pinnedSha256 !== undefined && bundle.binary.sha256 !== pinnedSha256) {
    throw refuse(
      bundle.dir,
      `its k3s has SHA-256 ${bundle.binary.sha256}, the spec's k3s.sha256 pins ${pinnedSha256}`,
      "the bundle's binary is not the one the spec trusts: assemble the bundle again from the release the pin names (fmc bundle checks it), or correct k3s.sha256",
    );
  }
  return bundle;
}

/**
 * Where a run finds its bundle: a lab run the one `fmc lab up` made (its stand-in), any
 * other run the one `fmc bundle` assembled for the pinned version, if any; without one the
 * nodes download the release themselves.
 */
export function k3sBundleDir(stateDir: string, version: string, source: "spec" | "lab"): string {
  return source === "lab" ? join(stateDir, "lab", `k3s-bundle-${version}`) : join(stateDir, "bundle", `k3s-${version}`);
}
