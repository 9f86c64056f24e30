// fmc bundle: assembles the K3s bundle that fmc apply installs from instead of letting
// nodes download K3s (src/local/bundle-build.ts does the work): from files the user has,
// or from one download of the release. Prints each file with its size and SHA-256, or
// the manifest with --json; progress and notes go to stderr.
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { defineCommand } from "citty";
import { FmcError } from "../errors.js";
import { DEFAULT_SPEC_FILE, InvalidSpec, load } from "../project.js";
import { hasErrors } from "../model/load.js";
import { stateDirFor } from "../state/secrets.js";
import { BUNDLE_FILES, RELEASE_CHECKSUMS, type BundleFile } from "../local/bundle.js";
import { buildBundle, checkBaseUrl, checkK3sVersion, filesFromDir, imagesBundleName, type BuildResult, type BundleInput, type DownloadProgress } from "../local/bundle-build.js";
import { k3sBundleDir } from "../local/bundle.js";
import { bold, dim, fileArg, specArg, specFileOf, stateArg } from "./ui.js";

/** Bytes in the largest binary unit that keeps a whole number in front: 14.2 KiB, 3.0 MiB. */
const size = (b: number) => (b < 1024 ? `${b} B` : b < 1048576 ? `${(b / 1024).toFixed(1)} KiB` : b < 1073741824 ? `${(b / 1048576).toFixed(1)} MiB` : `${(b / 1073741824).toFixed(2)} GiB`);

/** What a user reads after a bundle run; pure, so tests read it too. */
export function bundleText(r: BuildResult, shownDir: string): string {
  const m = r.bundle.manifest;
  const names = BUNDLE_FILES.filter((n) => m.files[n]);
  const w = Math.max(...names.map((n) => n.length));
  const out = [`K3s ${m.k3sVersion} bundle in ${shownDir}${r.unchanged ? ": unchanged, it already held these files" : ""}`];
  for (const n of names) out.push(`  ${n.padEnd(w)}  ${size(m.files[n]!.bytes).padStart(10)}  sha256 ${m.files[n]!.sha256.slice(0, 12)}`);
  if (r.removed.length) out.push(`  removed from the earlier bundle: ${r.removed.join(", ")}`);
  const checked = names.filter((n) => n === "k3s" || n.startsWith("k3s-airgap-images"));
  out.push(`${checked.join(" and ")} match${checked.length === 1 ? "es" : ""} the release's ${RELEASE_CHECKSUMS}; ${m.source}`);
  out.push("next: fmc apply installs from it");
  return `${out.join("\n")}\n`;
}

/** Progress on stderr: a line rewritten in place on a terminal, a line every 10 s otherwise. */
function progressPrinter(): (p: DownloadProgress) => void {
  const tty = !!process.stderr.isTTY;
  let last = 0;
  return (p) => {
    const now = performance.now();
    if (!p.done && p.bytes > 0 && now - last < (tty ? 250 : 10_000)) return;
    last = now;
    const pct = p.total ? ` of ${size(p.total)} (${Math.floor((p.bytes / p.total) * 100)}%)` : "";
    process.stderr.write(`${tty && !p.done ? "\r\x1b[K" : ""}${p.name}: ${size(p.bytes)}${pct}${p.done || !tty ? "\n" : ""}`);
  };
}

export interface BundleArgs {
  spec?: string;
  file?: string;
  state?: string;
  output?: string;
  version?: string;
  from?: string;
  k3s?: string;
  checksums?: string;
  images?: string;
  "install-script"?: string;
  download?: boolean;
  "base-url"?: string;
}

/** The options checked against each other, turned into what to assemble from. */
export function bundleInput(a: BundleArgs): BundleInput {
  const script = a["install-script"];
  const files = a.k3s !== undefined || a.checksums !== undefined || a.images !== undefined;
  if (a.from !== undefined && a.download) throw new FmcError("USAGE", "--from and --download both given", "one source please: files you have (--from DIR) or the release (--download)");
  if ((a.from !== undefined || a.download) && files) throw new FmcError("USAGE", `--k3s, --checksums and --images name files, and so does ${a.download ? "--download (it fetches them)" : "--from"}`, "one source please");
  if (a["base-url"] !== undefined && !a.download) throw new FmcError("USAGE", "--base-url is where --download fetches from", `fmc bundle --download --base-url ${a["base-url"]}`);
  if (a.download) {
    if (a["base-url"] !== undefined) checkBaseUrl(a["base-url"]);
    return { kind: "download", ...(a["base-url"] !== undefined ? { baseUrl: a["base-url"] } : {}), ...(script !== undefined ? { installScript: script } : {}) };
  }
  if (a.from !== undefined) {
    const found = filesFromDir(a.from);
    if (script !== undefined && found["install.sh"]) throw new FmcError("USAGE", `two install scripts: --install-script ${script} and ${found["install.sh"]}`, "name one");
    return { kind: "files", files: { ...found, ...(script !== undefined ? { "install.sh": script } : {}) } };
  }
  if (!files) throw new FmcError("USAGE", "nothing to assemble the bundle from", "--from DIR (the release's files under their names), --k3s FILE --checksums FILE [--images FILE], or --download");
  if (a.k3s === undefined || a.checksums === undefined) throw new FmcError("USAGE", `--${a.k3s === undefined ? "k3s" : "checksums"} is missing`, "--k3s FILE and --checksums FILE (the release's sha256sum-amd64.txt) go together");
  const given: Partial<Record<BundleFile, string>> = { k3s: a.k3s, [RELEASE_CHECKSUMS]: a.checksums };
  if (a.images !== undefined) given[imagesBundleName(a.images)] = a.images;
  if (script !== undefined) given["install.sh"] = script;
  return { kind: "files", files: given };
}

export const bundleCommand = defineCommand({
  meta: {
    name: "bundle",
    description: [
      "Assemble a K3s bundle (binary, release checksums, air-gap images, install script) that fmc apply installs from instead of letting nodes download K3s.",
      "Air-gapped clusters: run fmc bundle --download where the internet is reachable (or put the release's files in a directory and use --from DIR),",
      "then bring the directory (default .fmc/bundle/k3s-VERSION next to the spec) to the machine that runs fmc apply; no node fetches anything from GitHub.",
      "The binary and images are checked against the release's sha256sum-amd64.txt before the bundle counts as finished; a mismatch is refused.",
    ].join("\n"),
  },
  args: {
    spec: specArg,
    file: fileArg,
    state: stateArg,
    output: { type: "string", alias: "o", description: "bundle directory (default: <state dir>/bundle/k3s-<version>, created 0700)" },
    version: { type: "string", description: "K3s release, e.g. v1.33.4+k3s1 (default: the spec's k3s.version; with it no spec is needed)" },
    from: { type: "string", description: "a directory holding the release's files under their names: k3s, sha256sum-amd64.txt, optionally k3s-airgap-images-amd64.tar.zst|.tar.gz and install.sh" },
    k3s: { type: "string", description: "the k3s binary (amd64)" },
    checksums: { type: "string", description: "the release's sha256sum-amd64.txt" },
    images: { type: "string", description: "the release's air-gap images tarball (.tar.zst or .tar.gz)" },
    "install-script": { type: "string", description: "get.k3s.io's install.sh (not part of a release), kept in the bundle" },
    download: { type: "boolean", description: "fetch k3s, sha256sum-amd64.txt and k3s-airgap-images-amd64.tar.zst from the release (3 attempts each)", default: false },
    "base-url": { type: "string", description: "with --download: a mirror of https://github.com/k3s-io/k3s/releases/download (<base>/<version>/<file>)" },
    json: { type: "boolean", description: "print the manifest (bundle.json) on stdout", default: false },
  },
  async run({ args: a }) {
    const input = bundleInput(a);
    const file = specFileOf(a);
    let version = a.version === undefined ? undefined : checkK3sVersion(a.version);
    let specFile: string | undefined;
    let pinnedSha256: string | undefined;
    // without --version the spec names it; with it, a spec is read only when there is one
    if (version === undefined || file !== undefined || existsSync(DEFAULT_SPEC_FILE)) {
      const loaded = load(file);
      if (!loaded.spec || hasErrors(loaded.problems)) throw new InvalidSpec(loaded.problems);
      specFile = loaded.source.file;
      const pinned = loaded.spec.k3s.version;
      if (version === undefined) version = pinned;
      else if (version !== pinned) process.stderr.write(dim(`note: the spec pins K3s ${pinned}; fmc apply uses a ${version} bundle once k3s.version says ${version}\n`));
      if (version === pinned) pinnedSha256 = loaded.spec.k3s.sha256;
    }
    let dir = a.output;
    if (dir === undefined) {
      const state = stateDirFor(specFile, a.state).path;
      dir = k3sBundleDir(state, version, "spec");
      // bundles are large binaries: never committed with the spec
      try {
        mkdirSync(join(state, "bundle"), { recursive: true, mode: 0o700 });
        if (!existsSync(join(state, "bundle", ".gitignore"))) writeFileSync(join(state, "bundle", ".gitignore"), "# fmc K3s bundles: large release files, never committed\n*\n", { mode: 0o644 });
      } catch (e) {
        throw new FmcError("BUNDLE", `the bundle directory ${join(state, "bundle")} can't be created: ${(e as Error).message}`, "name another with -o DIR, or the state directory with --state");
      }
    }
    const shown = relative(process.cwd(), dir) || dir;
    const note = (line: string) => process.stderr.write(dim(`${line}\n`));
    if (input.kind === "download") note(`downloading K3s ${version} into ${shown}`);
    const result = await buildBundle({ dir, version, input, ...(pinnedSha256 ? { pinnedSha256 } : {}), download: { progress: progressPrinter(), log: note }, log: note });
    if (a.json) process.stdout.write(`${JSON.stringify(result.bundle.manifest, null, 2)}\n`);
    else process.stdout.write(bundleText(result, shown).replace(/^(K3s \S+ bundle)/, (m) => bold(m)));
  },
});
