// Assembles a K3s bundle (the layout src/local/bundle.ts reads) from files the user gives
// or from one download of the release. Nothing is declared done before it is verified:
// every file lands beside its final name as NAME.part, the binary and the images are
// checked against the release's own checksum file (and the spec's k3s.sha256 when it pins
// one), only then are the files renamed into place, and bundle.json is written last,
// atomically. A failed run leaves no bundle.json and no final-named file of its own; a run
// over a finished bundle with the same files changes nothing.
import { accessSync, chmodSync, closeSync, constants, createReadStream, createWriteStream, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { setTimeout as sleep } from "node:timers/promises";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import { FmcError } from "../errors.js";
import { readSmallTextFile } from "../files.js";
import { BUNDLE_FILES, BUNDLE_MANIFEST, parseReleaseChecksums, readBundle, RELEASE_CHECKSUMS, type BundleFile, type BundleManifest, type K3sBundle } from "./bundle.js";
import { Digest, sha256File } from "./digest.js";

/** The spec's pattern for a K3s release (src/model/schema.ts k3s.version). */
const K3S_VERSION = /^v\d+\.\d+\.\d+\+k3s\d+$/;
const RELEASES_URL = "https://github.com/k3s-io/k3s/releases/download";
export const IMAGES_ZST = "k3s-airgap-images-amd64.tar.zst";
export const IMAGES_GZ = "k3s-airgap-images-amd64.tar.gz";
/** What --download fetches, in this order: the small checksum file first, so a missing line stops it before 200 MB. */
const DOWNLOADED_FILES = [RELEASE_CHECKSUMS, "k3s", IMAGES_ZST] as const satisfies readonly BundleFile[];
/** The release files that must equal their line in the checksum file. */
const RELEASED: readonly BundleFile[] = ["k3s", IMAGES_ZST, IMAGES_GZ];
/** A release checksum file is about 2 KB; anything near this is not one. */
const MAX_CHECKSUMS_BYTES = 1024 * 1024;

export function checkK3sVersion(version: string, what = "--version"): string {
  if (!K3S_VERSION.test(version)) throw new FmcError("USAGE", `${what} ${JSON.stringify(version)} is not a K3s release`, 'K3s versions look like "v1.33.4+k3s1"');
  return version;
}

/** A checked http(s) base URL, without a trailing slash. */
export function checkBaseUrl(base: string): string {
  let u: URL;
  try {
    u = new URL(base);
  } catch {
    throw new FmcError("USAGE", `--base-url ${JSON.stringify(base)} is not a URL`, `the releases' base, e.g. ${RELEASES_URL}`);
  }
  if (u.protocol !== "https:" && u.protocol !== "http:") throw new FmcError("USAGE", `--base-url ${base}: only http and https are fetched`);
  if (u.search || u.hash || u.username || u.password) throw new FmcError("USAGE", `--base-url ${base}: no query, fragment or credentials please`, "a mirror's plain base URL; the version and the file name are appended");
  return u.href.replace(/\/+$/, "");
}

/** A release file's URL: <base>/<version, + as %2B>/<name>, the way GitHub names release assets. */
export function releaseFileUrl(version: string, name: string, baseUrl = RELEASES_URL): string {
  return `${baseUrl.replace(/\/+$/, "")}/${version.replace(/\+/g, "%2B")}/${name}`;
}

/** The bundle name of an images tarball the user gives, by its compression. */
export function imagesBundleName(path: string): BundleFile {
  if (/\.tar\.zst$/.test(path)) return IMAGES_ZST;
  if (/\.tar\.gz$/.test(path)) return IMAGES_GZ;
  throw new FmcError("USAGE", `--images ${path}: an images tarball is .tar.zst or .tar.gz`, `the release's ${IMAGES_ZST} (or ${IMAGES_GZ})`);
}

/** The bundle files a directory the user filled holds, by their release names. */
export function filesFromDir(dir: string): Partial<Record<BundleFile, string>> {
  if (!existsSync(dir)) throw new FmcError("FILE_NOT_FOUND", `--from ${dir} does not exist`);
  if (!statSync(dir).isDirectory()) throw new FmcError("USAGE", `--from ${dir} is not a directory`, "name the directory that holds k3s and sha256sum-amd64.txt, or give the files with --k3s and --checksums");
  const names = new Set(readdirSync(dir));
  const out: Partial<Record<BundleFile, string>> = {};
  for (const f of BUNDLE_FILES) if (names.has(f)) out[f] = join(dir, f);
  for (const need of ["k3s", RELEASE_CHECKSUMS] as const) {
    if (!out[need]) throw new FmcError("FILE_NOT_FOUND", `--from ${dir} has no file named ${need}`, `it needs the release's files under their release names: ${BUNDLE_FILES.join(", ")} (the images and install.sh are optional)`);
  }
  return out;
}

/** Refuses a file whose SHA-256 is not its line in the release checksum file, naming both hashes. */
function verifyReleaseFile(name: string, sha256: string, release: ReadonlyMap<string, string>, version: string): void {
  const want = release.get(name);
  if (!want) throw new FmcError("BUNDLE", `the release checksum file ${RELEASE_CHECKSUMS} has no line for ${name} (its SHA-256 is ${sha256})`, `is ${RELEASE_CHECKSUMS} the one of K3s ${version}, amd64?`);
  if (want !== sha256) {
    throw new FmcError("BUNDLE", `${name}'s SHA-256 is ${sha256}, the release's ${RELEASE_CHECKSUMS} says ${want}: refused`, `the file is not the one K3s published as ${version}: get it again (another version's or architecture's file, a truncated download, or a changed file)`);
  }
}

export interface DownloadProgress {
  readonly name: string;
  readonly bytes: number;
  /** From Content-Length, when the server sent one. */
  readonly total?: number;
  readonly done: boolean;
}

export interface DownloadOptions {
  readonly name?: string;
  /** Attempts in all (default 3); waits of retryDelayMs, then twice that, between them. */
  readonly attempts?: number;
  readonly retryDelayMs?: number;
  /** A connection that sends nothing for this long is dropped (and retried). */
  readonly idleTimeoutMs?: number;
  readonly maxBytes?: number;
  readonly progress?: (p: DownloadProgress) => void;
  readonly log?: (line: string) => void;
}

/** An HTTP answer or a transfer that failed; `retry` says whether trying again may help. */
class Failed extends Error {
  constructor(
    message: string,
    readonly retry: boolean,
  ) {
    super(message);
  }
}

const CAUSES: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection reset",
  ENOTFOUND: "no such host name",
  EAI_AGAIN: "the host name did not resolve (no DNS?)",
  UND_ERR_SOCKET: "the connection broke off",
};

const why = (e: unknown): string => {
  const err = e as Error & { cause?: { code?: string; message?: string } };
  const code = err.cause?.code;
  const cause = err.cause ? `: ${(code && CAUSES[code]) ?? code ?? err.cause.message}` : "";
  return `${err.message}${cause}`;
};

/**
 * Streams `url` into `dest` (0600) with Node's fetch, and returns what landed: its
 * SHA-256 and size. Server errors (5xx, 408, 429), refused or dropped connections, a
 * stalled transfer and a body shorter than its Content-Length are tried again with
 * backoff; anything else (a 404: no such release file) stops at once.
 */
export async function downloadFile(url: string, dest: string, o: DownloadOptions = {}): Promise<{ sha256: string; bytes: number }> {
  const attempts = o.attempts ?? 3;
  const name = o.name ?? basename(dest);
  for (let attempt = 1; ; attempt++) {
    try {
      return await downloadOnce(url, dest, name, o);
    } catch (e) {
      const retry = e instanceof Failed ? e.retry : true;
      if (!retry || attempt >= attempts) {
        rmSync(dest, { force: true });
        const tries = attempt > 1 ? ` (${attempt} attempts)` : "";
        throw new FmcError("BUNDLE_DOWNLOAD", `${url}: ${why(e)}${tries}`, "check the version and the network; --base-url names a mirror, or download the files elsewhere and assemble with --from");
      }
      const wait = (o.retryDelayMs ?? 1000) * 2 ** (attempt - 1);
      o.log?.(`${name}: ${why(e)}; trying again in ${(wait / 1000).toFixed(1)} s (attempt ${attempt + 1} of ${attempts})`);
      await sleep(wait);
    }
  }
}

async function downloadOnce(url: string, dest: string, name: string, o: DownloadOptions): Promise<{ sha256: string; bytes: number }> {
  const idleMs = o.idleTimeoutMs ?? 60_000;
  const ac = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const idle = () => {
    clearTimeout(timer);
    timer = setTimeout(() => ac.abort(new Failed(`nothing received for ${idleMs / 1000} s`, true)), idleMs);
  };
  idle();
  try {
    const res = await fetch(url, { signal: ac.signal, redirect: "follow", headers: { "user-agent": "fmc bundle" } });
    if (!res.ok || !res.body) {
      await res.body?.cancel().catch(() => undefined);
      const hint = res.status === 404 ? " (no such file in the release: is the version right?)" : "";
      throw new Failed(`HTTP ${res.status} ${res.statusText}${hint}`, res.status >= 500 || res.status === 408 || res.status === 429);
    }
    const length = res.headers.get("content-length");
    const total = length !== null && /^\d+$/.test(length) ? Number(length) : undefined;
    if (o.maxBytes !== undefined && total !== undefined && total > o.maxBytes) throw new Failed(`${total} bytes; a ${name} is never more than ${o.maxBytes}`, false);
    const digest = new Digest((bytes) => {
      idle();
      if (o.maxBytes !== undefined && bytes > o.maxBytes) throw new Failed(`more than ${o.maxBytes} bytes; a ${name} is never that large`, false);
      o.progress?.({ name, bytes, total, done: false });
    });
    o.progress?.({ name, bytes: 0, total, done: false });
    await pipeline(Readable.fromWeb(res.body as WebReadableStream<Uint8Array>, { signal: ac.signal }), digest, createWriteStream(dest, { mode: 0o600 }));
    if (total !== undefined && digest.bytes !== total) throw new Failed(`the connection ended after ${digest.bytes} of ${total} bytes`, true);
    o.progress?.({ name, bytes: digest.bytes, total, done: true });
    return { sha256: digest.hex(), bytes: digest.bytes };
  } catch (e) {
    // an abort carries the reason the idle timer gave it
    if (ac.signal.aborted && ac.signal.reason instanceof Failed) throw ac.signal.reason;
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

/** Copies `src` to `dest` (0600) and returns the SHA-256 and size of what was copied. */
async function copyFile(src: string, dest: string): Promise<{ sha256: string; bytes: number }> {
  const digest = new Digest();
  await pipeline(createReadStream(src), digest, createWriteStream(dest, { mode: 0o600 }));
  return { sha256: digest.hex(), bytes: digest.bytes };
}

export type BundleInput =
  /** Files the user has: bundle name → path (k3s and the checksum file at least). */
  | { readonly kind: "files"; readonly files: Partial<Record<BundleFile, string>> }
  /** The release's k3s, checksum file and images, fetched from baseUrl (default GitHub); install.sh only from a file. */
  | { readonly kind: "download"; readonly baseUrl?: string; readonly installScript?: string };

export interface BuildOptions {
  readonly dir: string;
  readonly version: string;
  readonly input: BundleInput;
  /** The spec's k3s.sha256, when it pins one for this version: the binary must have it too. */
  readonly pinnedSha256?: string;
  readonly download?: Omit<DownloadOptions, "name" | "maxBytes">;
  /** Notes for people (stderr). */
  readonly log?: (line: string) => void;
  readonly now?: () => Date;
  /** What the manifest says the files are, instead of where they came from (the lab's stand-in). */
  readonly source?: string;
}

export interface BuildResult {
  readonly bundle: K3sBundle;
  /** The directory already held this very bundle: nothing was written. */
  readonly unchanged: boolean;
  /** Files of an earlier bundle in the directory that the new one does not have (removed). */
  readonly removed: readonly string[];
}

interface Staged {
  readonly name: BundleFile;
  readonly sha256: string;
  readonly bytes: number;
  /** Where it waits to be renamed into place; undefined while only the source was hashed. */
  part?: string;
}

const partOf = (dir: string, name: string) => join(dir, `${name}.part`);

/** Creates the bundle directory (0700) or checks the one there: a directory this user can write. True when it was created. */
function prepareDir(dir: string): boolean {
  if (existsSync(dir) && !statSync(dir).isDirectory()) throw new FmcError("BUNDLE", `${dir} exists and is not a directory`, "name a new or empty directory with -o");
  const created = !existsSync(dir);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    accessSync(dir, constants.W_OK | constants.X_OK);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const what = err.code === "EACCES" || err.code === "EPERM" || err.code === "EROFS" ? "is not writable by this user" : err.code === "ENOTDIR" ? "can't be created: a parent is a file" : `can't be created: ${err.message}`;
    throw new FmcError("BUNDLE", `the bundle directory ${dir} ${what}`, "name another with -o DIR");
  }
  return created;
}

function existingBundle(dir: string, version: string): K3sBundle | undefined {
  if (!existsSync(join(dir, BUNDLE_MANIFEST))) return undefined;
  try {
    return readBundle(dir, version);
  } catch {
    // an unusable or other-version bundle: replaced by this one
    return undefined;
  }
}

const sameFiles = (m: BundleManifest | undefined, staged: readonly Staged[]) =>
  !!m && Object.keys(m.files).length === staged.length && staged.every((s) => m.files[s.name]?.sha256 === s.sha256 && m.files[s.name]?.bytes === s.bytes);

function cleanParts(dir: string): void {
  for (const f of BUNDLE_FILES) rmSync(partOf(dir, f), { force: true });
  rmSync(join(dir, `${BUNDLE_MANIFEST}.tmp`), { force: true });
}

/** Puts verified parts in place: the old manifest goes first, the new one comes last. */
function commit(dir: string, version: string, staged: readonly Staged[], source: string, now: Date): string[] {
  const manifestPath = join(dir, BUNDLE_MANIFEST);
  let old: string[] = [];
  try {
    old = Object.keys((JSON.parse(readFileSync(manifestPath, "utf8")) as { files?: object }).files ?? {});
  } catch {
    // no (readable) earlier manifest
  }
  // from here until the new manifest lands the directory is an unfinished bundle
  rmSync(manifestPath, { force: true });
  for (const s of staged) {
    renameSync(s.part!, join(dir, s.name));
    if (s.name === "k3s") chmodSync(join(dir, s.name), 0o700);
  }
  const keep = new Set<string>(staged.map((s) => s.name));
  const removed = old.filter((n) => (BUNDLE_FILES as readonly string[]).includes(n) && !keep.has(n));
  for (const n of removed) rmSync(join(dir, n), { force: true });
  const files: BundleManifest["files"] = {};
  for (const name of BUNDLE_FILES) {
    const s = staged.find((x) => x.name === name);
    if (s) files[name] = { sha256: s.sha256, bytes: s.bytes };
  }
  const manifest: BundleManifest = { version: 1, k3sVersion: version, arch: "amd64", files, createdAt: now.toISOString(), source: source.length > 500 ? `${source.slice(0, 499)}…` : source };
  const tmp = `${manifestPath}.tmp`;
  const fd = openSync(tmp, "w", 0o600);
  try {
    writeSync(fd, `${JSON.stringify(manifest, null, 2)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, manifestPath);
  return removed;
}

/** The files given on the command line: each a regular file, k3s and the checksum file present. */
function checkInputFiles(files: Partial<Record<BundleFile, string>>): [BundleFile, string][] {
  const entries = BUNDLE_FILES.flatMap((n) => (files[n] === undefined ? [] : [[n, files[n]!] as [BundleFile, string]]));
  for (const need of ["k3s", RELEASE_CHECKSUMS] as const) if (!files[need]) throw new FmcError("USAGE", `no ${need} given`, "--k3s FILE and --checksums FILE, or --from DIR, or --download");
  for (const [name, path] of entries) checkRegularFile(path, `${name} file`);
  return entries;
}

function checkRegularFile(path: string, what: string): void {
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new FmcError("FILE_NOT_FOUND", `${what} ${path} does not exist`);
  }
  if (!st.isFile()) throw new FmcError("FILE_NOT_REGULAR", `${what} ${path} is not a regular file`, "name a file");
}

/**
 * Assembles a bundle in `dir` and returns it as readBundle reads it (the last check).
 * The binary and the images must equal their lines in the release checksum file, and
 * the binary the spec's k3s.sha256 when given; a refused file leaves nothing finished.
 */
export async function buildBundle(o: BuildOptions): Promise<BuildResult> {
  checkK3sVersion(o.version);
  const log = o.log ?? (() => undefined);
  const staged: Staged[] = [];
  const verify = (s: Staged, release: ReadonlyMap<string, string>) => {
    if ((RELEASED as readonly string[]).includes(s.name)) verifyReleaseFile(s.name, s.sha256, release, o.version);
    if (s.name === "k3s" && o.pinnedSha256 && s.sha256 !== o.pinnedSha256) {
      throw new FmcError("BUNDLE", `k3s's SHA-256 is ${s.sha256}, the spec's k3s.sha256 pins ${o.pinnedSha256}: refused`, "the spec and the release disagree: check k3s.sha256 against the release's sha256sum-amd64.txt");
    }
  };
  let source: string;
  let created = false;
  try {
    if (o.input.kind === "files") {
      const entries = checkInputFiles(o.input.files);
      const release = parseReleaseChecksums(readSmallTextFile(o.input.files[RELEASE_CHECKSUMS]!, "checksum file", MAX_CHECKSUMS_BYTES));
      // the sources are checked where they are, before anything is copied
      for (const [name, path] of entries) {
        const s: Staged = { name, sha256: await sha256File(path), bytes: statSync(path).size };
        verify(s, release);
        staged.push(s);
      }
      created = prepareDir(o.dir);
      const old = existingBundle(o.dir, o.version);
      if (old && sameFiles(old.manifest, staged)) return { bundle: old, unchanged: true, removed: [] };
      for (const [name, path] of entries) {
        const s = staged.find((x) => x.name === name)!;
        s.part = partOf(o.dir, name);
        const got = await copyFile(path, s.part);
        if (got.sha256 !== s.sha256 || got.bytes !== s.bytes) throw new FmcError("BUNDLE", `${path} changed while it was copied (SHA-256 ${s.sha256}, then ${got.sha256})`, "run fmc bundle again when nothing writes to it");
      }
      source = `given by the user: ${entries.map(([, p]) => resolve(p)).join(", ")}`;
    } else {
      const base = o.input.baseUrl === undefined ? RELEASES_URL : checkBaseUrl(o.input.baseUrl);
      const script = o.input.installScript;
      if (script !== undefined) checkRegularFile(script, "install.sh file");
      if (base.startsWith("http:")) log(`note: ${base} is plain http: the checksum file comes the same way as the files it vouches for; pin k3s.sha256 in the spec to check the binary against a hash you trust`);
      created = prepareDir(o.dir);
      const fetchOne = async (name: BundleFile, maxBytes?: number): Promise<Staged> => {
        const part = partOf(o.dir, name);
        const got = await downloadFile(releaseFileUrl(o.version, name, base), part, { ...o.download, name, ...(maxBytes ? { maxBytes } : {}) });
        return { name, ...got, part };
      };
      const sums = await fetchOne(RELEASE_CHECKSUMS, MAX_CHECKSUMS_BYTES);
      staged.push(sums);
      const release = parseReleaseChecksums(readSmallTextFile(sums.part!, "checksum file", MAX_CHECKSUMS_BYTES));
      // a line missing from the release stops it before the large downloads
      for (const name of DOWNLOADED_FILES) if (name !== RELEASE_CHECKSUMS && !release.get(name)) throw new FmcError("BUNDLE", `the release checksum file at ${releaseFileUrl(o.version, RELEASE_CHECKSUMS, base)} has no line for ${name}`, `is ${o.version} a K3s release with amd64 files?`);
      // the spec's pin is checked against the release's line before 70 MB are fetched to find out
      if (o.pinnedSha256 && release.get("k3s") !== o.pinnedSha256) {
        throw new FmcError("BUNDLE", `the release's ${RELEASE_CHECKSUMS} says k3s is ${release.get("k3s")}, the spec's k3s.sha256 pins ${o.pinnedSha256}: refused`, "the spec and the release disagree: check k3s.sha256 (and k3s.version)");
      }
      const scriptSha = script === undefined ? undefined : { sha256: await sha256File(script), bytes: statSync(script).size };
      // the checksum file pins the rest: the same one over a finished bundle of the same files is the same bundle
      const oldBundle = existingBundle(o.dir, o.version);
      const old = oldBundle?.manifest;
      const expect: Staged[] = [sums, { name: "k3s", sha256: release.get("k3s")!, bytes: old?.files.k3s?.bytes ?? -1 }, { name: IMAGES_ZST, sha256: release.get(IMAGES_ZST)!, bytes: old?.files[IMAGES_ZST]?.bytes ?? -1 }];
      if (scriptSha) expect.push({ name: "install.sh", ...scriptSha });
      if (oldBundle && sameFiles(old, expect)) {
        cleanParts(o.dir);
        return { bundle: oldBundle, unchanged: true, removed: [] };
      }
      for (const name of DOWNLOADED_FILES) {
        if (name === RELEASE_CHECKSUMS) continue;
        const s = await fetchOne(name);
        staged.push(s);
        verify(s, release);
        log(`${name}: ${s.sha256.slice(0, 12)} matches the release's checksum file`);
      }
      if (script !== undefined) {
        const part = partOf(o.dir, "install.sh");
        const got = await copyFile(script, part);
        staged.push({ name: "install.sh", ...got, part });
      }
      source = `downloaded from ${releaseFileUrl(o.version, "", base)}${script === undefined ? "" : `; install.sh given by the user: ${resolve(script)}`}`;
    }
    const removed = commit(o.dir, o.version, staged, o.source ?? source, (o.now ?? (() => new Date()))());
    try {
      return { bundle: readBundle(o.dir, o.version, o.pinnedSha256), unchanged: false, removed };
    } catch (e) {
      // never leave a bundle that its own reader refuses looking finished
      rmSync(join(o.dir, BUNDLE_MANIFEST), { force: true });
      throw e;
    }
  } catch (e) {
    if (existsSync(o.dir)) {
      cleanParts(o.dir);
      // a directory this run made and filled with nothing goes again
      if (created && readdirSync(o.dir).length === 0) rmSync(o.dir, { recursive: true, force: true });
    }
    throw e;
  }
}
