// fmc bundle: assembling a K3s bundle from files and from a download (a loopback HTTP
// server standing in for GitHub's release downloads), refusing files that are not the
// release's, and leaving nothing that looks finished when it refuses.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { FmcError } from "../../src/errors.js";
import { BUNDLE_MANIFEST, readBundle, RELEASE_CHECKSUMS } from "../../src/local/bundle.js";
import { buildBundle, downloadFile, filesFromDir, IMAGES_GZ, IMAGES_ZST, releaseFileUrl, type DownloadProgress } from "../../src/local/bundle-build.js";
import { bundleInput, bundleText } from "../../src/cli/bundle-commands.js";
import { ROOT, tempDir } from "../helpers.js";

const VERSION = "v1.33.4+k3s1";
const sha = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");
const mode = (p: string) => statSync(p).mode & 0o777;

interface FakeRelease {
  readonly dir: string;
  readonly k3s: Buffer;
  readonly images: Buffer;
  readonly sums: string;
}

/** A release as K3s publishes it: the binary, the images, and a checksum file with lines for more files than those. */
function fakeRelease(dir: string): FakeRelease {
  mkdirSync(dir, { recursive: true });
  const k3s = Buffer.concat([Buffer.from("\x7fELF fake k3s\n"), randomBytes(150_000)]);
  const images = randomBytes(400_000);
  const sums = [
    `${sha(k3s)}  k3s`,
    `${sha(randomBytes(10))}  k3s-arm64`,
    `${sha(images)}  ${IMAGES_ZST}`,
    `${sha(randomBytes(10))}  k3s-airgap-images-amd64.tar`,
    `${sha(randomBytes(10))}  k3s-images.txt`,
    "",
  ].join("\n");
  writeFileSync(join(dir, "k3s"), k3s);
  writeFileSync(join(dir, IMAGES_ZST), images);
  writeFileSync(join(dir, RELEASE_CHECKSUMS), sums);
  return { dir, k3s, images, sums };
}

const rejectsWith = async (p: Promise<unknown>, code: string, message: RegExp) =>
  assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof FmcError, String(e));
    assert.equal(e.code, code, e.message);
    assert.match(e.message, message);
    return true;
  });

test("a bundle assembled from a directory: files verified, manifest last, readBundle accepts it; again is a no-op", async (t) => {
  const tmp = tempDir(t);
  const rel = fakeRelease(join(tmp, "release"));
  const dir = join(tmp, "out", "bundle");
  const r = await buildBundle({ dir, version: VERSION, input: { kind: "files", files: filesFromDir(rel.dir) }, now: () => new Date("2026-01-02T03:04:05Z") });
  assert.equal(r.unchanged, false);
  const manifest = JSON.parse(readFileSync(join(dir, BUNDLE_MANIFEST), "utf8"));
  assert.deepEqual(manifest, {
    version: 1,
    k3sVersion: VERSION,
    arch: "amd64",
    files: {
      k3s: { sha256: sha(rel.k3s), bytes: rel.k3s.length },
      [RELEASE_CHECKSUMS]: { sha256: sha(rel.sums), bytes: Buffer.byteLength(rel.sums) },
      [IMAGES_ZST]: { sha256: sha(rel.images), bytes: rel.images.length },
    },
    createdAt: "2026-01-02T03:04:05.000Z",
    source: `given by the user: ${join(rel.dir, "k3s")}, ${join(rel.dir, RELEASE_CHECKSUMS)}, ${join(rel.dir, IMAGES_ZST)}`,
  });
  const b = readBundle(dir, VERSION);
  assert.equal(b.binary.sha256, sha(rel.k3s));
  assert.deepEqual(readFileSync(b.binary.path), rel.k3s);
  assert.deepEqual(readdirSync(dir).sort(), [BUNDLE_MANIFEST, "k3s", IMAGES_ZST, RELEASE_CHECKSUMS].sort());
  assert.equal(mode(dir), 0o700);
  assert.equal(mode(join(dir, BUNDLE_MANIFEST)), 0o600);

  const text = bundleText(r, "out/bundle");
  assert.match(text, new RegExp(`^  k3s +146\\.5 KiB  sha256 ${sha(rel.k3s).slice(0, 12)}$`, "m"));
  assert.match(text, /next: fmc apply installs from it/);

  const before = readFileSync(join(dir, BUNDLE_MANIFEST), "utf8");
  const again = await buildBundle({ dir, version: VERSION, input: { kind: "files", files: filesFromDir(rel.dir) } });
  assert.equal(again.unchanged, true);
  assert.equal(readFileSync(join(dir, BUNDLE_MANIFEST), "utf8"), before);
  assert.match(bundleText(again, "out/bundle"), /unchanged, it already held these files/);

  // the same directory as source and destination works in place
  const inPlace = await buildBundle({ dir: rel.dir, version: VERSION, input: { kind: "files", files: filesFromDir(rel.dir) } });
  assert.equal(readBundle(rel.dir, VERSION).manifest.files.k3s?.sha256, sha(rel.k3s));
  assert.equal(inPlace.unchanged, false);
});

test("files given one by one: a .tar.gz images file under any name, install.sh kept, replacing an earlier bundle's files", async (t) => {
  const tmp = tempDir(t);
  const rel = fakeRelease(join(tmp, "release"));
  const gz = randomBytes(1000);
  writeFileSync(join(tmp, "my-images.tar.gz"), gz);
  const sums = `${rel.sums}${sha(gz)}  ${IMAGES_GZ}\n`;
  writeFileSync(join(tmp, "sums.txt"), sums);
  writeFileSync(join(tmp, "install.sh"), "#!/bin/sh\necho k3s\n");
  const dir = join(tmp, "b");
  await buildBundle({ dir, version: VERSION, input: { kind: "files", files: filesFromDir(rel.dir) } });
  const input = bundleInput({ k3s: join(rel.dir, "k3s"), checksums: join(tmp, "sums.txt"), images: join(tmp, "my-images.tar.gz"), "install-script": join(tmp, "install.sh") });
  const r = await buildBundle({ dir, version: VERSION, input });
  assert.deepEqual(r.removed, [IMAGES_ZST]);
  const b = readBundle(dir, VERSION);
  assert.deepEqual(Object.keys(b.manifest.files).sort(), ["install.sh", "k3s", IMAGES_GZ, RELEASE_CHECKSUMS].sort());
  assert.deepEqual(readFileSync(join(dir, IMAGES_GZ)), gz);
  assert.equal(existsSync(join(dir, IMAGES_ZST)), false);
});

test("a tampered binary, a missing checksum line and a spec-pinned hash that differs are refused, and nothing looks finished", async (t) => {
  const tmp = tempDir(t);
  const rel = fakeRelease(join(tmp, "release"));
  const bad = Buffer.from(rel.k3s);
  bad[100] = bad[100]! ^ 0xff;
  writeFileSync(join(tmp, "k3s-tampered"), bad);
  const dir = join(tmp, "b");
  const files = { k3s: join(tmp, "k3s-tampered"), [RELEASE_CHECKSUMS]: join(rel.dir, RELEASE_CHECKSUMS) };
  await rejectsWith(buildBundle({ dir, version: VERSION, input: { kind: "files", files } }), "BUNDLE", new RegExp(`k3s's SHA-256 is ${sha(bad)}, the release's ${RELEASE_CHECKSUMS} says ${sha(rel.k3s)}`));
  assert.equal(existsSync(dir), false);

  // over a finished bundle, a refused run leaves the earlier one whole
  await buildBundle({ dir, version: VERSION, input: { kind: "files", files: filesFromDir(rel.dir) } });
  await rejectsWith(buildBundle({ dir, version: VERSION, input: { kind: "files", files } }), "BUNDLE", /refused/);
  assert.equal(readBundle(dir, VERSION).binary.sha256, sha(rel.k3s));
  assert.deepEqual(readdirSync(dir).filter((n) => n.endsWith(".part")), []);

  writeFileSync(join(tmp, "short-sums"), `${sha(rel.k3s)}  k3s\n`);
  await rejectsWith(
    buildBundle({ dir: join(tmp, "c"), version: VERSION, input: { kind: "files", files: { ...filesFromDir(rel.dir), [RELEASE_CHECKSUMS]: join(tmp, "short-sums") } } }),
    "BUNDLE",
    new RegExp(`has no line for ${IMAGES_ZST.replace(/\./g, "\\.")} \\(its SHA-256 is ${sha(rel.images)}\\)`),
  );
  const pinned = "0".repeat(64);
  await rejectsWith(buildBundle({ dir: join(tmp, "d"), version: VERSION, pinnedSha256: pinned, input: { kind: "files", files: filesFromDir(rel.dir) } }), "BUNDLE", new RegExp(`k3s's SHA-256 is ${sha(rel.k3s)}, the spec's k3s.sha256 pins ${pinned}`));
  for (const d of ["c", "d"]) assert.equal(existsSync(join(tmp, d, BUNDLE_MANIFEST)), false);
});

test("bad input: clear errors before anything is written", async (t) => {
  const tmp = tempDir(t);
  const rel = fakeRelease(join(tmp, "release"));
  const usage = (f: () => unknown, re: RegExp, code = "USAGE") =>
    assert.throws(f, (e: unknown) => e instanceof FmcError && e.code === code && re.test(e.message));
  usage(() => bundleInput({ from: rel.dir, download: true }), /--from and --download both given/);
  usage(() => bundleInput({ download: true, images: "x.tar.zst" }), /--download \(it fetches them\)/);
  usage(() => bundleInput({ k3s: "k3s" }), /--checksums is missing/);
  usage(() => bundleInput({}), /nothing to assemble the bundle from/);
  usage(() => bundleInput({ "base-url": "http://127.0.0.1:1" }), /--base-url is where --download fetches from/);
  usage(() => bundleInput({ download: true, "base-url": "ftp://mirror/k3s" }), /only http and https/);
  usage(() => bundleInput({ k3s: "k3s", checksums: "s", images: "images.tar" }), /\.tar\.zst or \.tar\.gz/);
  usage(() => bundleInput({ from: join(tmp, "nope") }), /does not exist/, "FILE_NOT_FOUND");
  usage(() => bundleInput({ from: tmp }), /has no file named k3s/, "FILE_NOT_FOUND");
  await rejectsWith(buildBundle({ dir: join(tmp, "b"), version: "1.33.4", input: { kind: "files", files: filesFromDir(rel.dir) } }), "USAGE", /is not a K3s release/);
  await rejectsWith(buildBundle({ dir: join(tmp, "b"), version: VERSION, input: { kind: "files", files: { ...filesFromDir(rel.dir), k3s: join(tmp, "missing") } } }), "FILE_NOT_FOUND", /k3s file .*missing does not exist/);
  // a directory under a file can't be made
  await rejectsWith(buildBundle({ dir: join(rel.dir, "k3s", "b"), version: VERSION, input: { kind: "files", files: filesFromDir(rel.dir) } }), "BUNDLE", /exists and is not a directory|can't be created/);
});

/** A loopback release server: `/<version with %2B>/<name>`, with answers the test can script per request. */
async function releaseServer(t: { after: (fn: () => void) => void }, files: Record<string, Buffer | string>, script: (name: string, n: number, res: ServerResponse) => boolean = () => false) {
  const log: string[] = [];
  const counts = new Map<string, number>();
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    log.push(req.url!);
    const m = /^\/mirror\/v1\.33\.4%2Bk3s1\/([^/]+)$/.exec(req.url!);
    const name = m?.[1];
    const n = (counts.get(name ?? "") ?? 0) + 1;
    counts.set(name ?? "", n);
    if (name && script(name, n, res)) return;
    const body = name !== undefined ? files[name] : undefined;
    if (body === undefined) {
      res.writeHead(404).end("Not Found");
      return;
    }
    res.writeHead(200, { "content-length": Buffer.byteLength(body), "content-type": "application/octet-stream" }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.after(() => server.close());
  return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mirror/`, log };
}

test("--download from a mirror: %2B in the version, a 500 and a dropped transfer retried, progress with percent, a no-op again", async (t) => {
  const tmp = tempDir(t);
  const rel = fakeRelease(join(tmp, "release"));
  const { base, log } = await releaseServer(t, { k3s: rel.k3s, [IMAGES_ZST]: rel.images, [RELEASE_CHECKSUMS]: rel.sums }, (name, n, res) => {
    if (name === "k3s" && n === 1) {
      res.writeHead(500, "Internal Server Error").end("try later");
      return true;
    }
    if (name === IMAGES_ZST && n === 1) {
      // half the body, then the connection is gone
      res.writeHead(200, { "content-length": rel.images.length });
      res.write(rel.images.subarray(0, rel.images.length / 2), () => res.socket?.destroy());
      return true;
    }
    return false;
  });
  assert.equal(releaseFileUrl(VERSION, "k3s", base), `${base}v1.33.4%2Bk3s1/k3s`);
  const progress: DownloadProgress[] = [];
  const notes: string[] = [];
  const dir = join(tmp, "b");
  const r = await buildBundle({ dir, version: VERSION, input: { kind: "download", baseUrl: base }, download: { retryDelayMs: 10, progress: (p) => progress.push(p), log: (l) => notes.push(l) }, log: (l) => notes.push(l) });
  assert.equal(r.unchanged, false);
  assert.deepEqual(log, [`/mirror/v1.33.4%2Bk3s1/${RELEASE_CHECKSUMS}`, "/mirror/v1.33.4%2Bk3s1/k3s", "/mirror/v1.33.4%2Bk3s1/k3s", `/mirror/v1.33.4%2Bk3s1/${IMAGES_ZST}`, `/mirror/v1.33.4%2Bk3s1/${IMAGES_ZST}`]);
  assert.ok(notes.some((n) => /^k3s: HTTP 500 Internal Server Error; trying again in 0\.0 s \(attempt 2 of 3\)$/.test(n)), notes.join("\n"));
  assert.ok(notes.some((n) => n.startsWith(`${IMAGES_ZST}: `) && /attempt 2 of 3/.test(n)), notes.join("\n"));
  assert.ok(notes.some((n) => /plain http/.test(n)));
  const done = progress.filter((p) => p.done);
  assert.deepEqual(done.map((p) => [p.name, p.bytes, p.total]), [[RELEASE_CHECKSUMS, Buffer.byteLength(rel.sums), Buffer.byteLength(rel.sums)], ["k3s", rel.k3s.length, rel.k3s.length], [IMAGES_ZST, rel.images.length, rel.images.length]]);
  const b = readBundle(dir, VERSION);
  assert.equal(b.binary.sha256, sha(rel.k3s));
  assert.equal(b.manifest.files[IMAGES_ZST]?.sha256, sha(rel.images));
  assert.match(b.manifest.source, /^downloaded from http:\/\/127\.0\.0\.1:\d+\/mirror\/v1\.33\.4%2Bk3s1\/$/);

  // again: the checksum file is fetched, the rest is the same bundle
  log.length = 0;
  const again = await buildBundle({ dir, version: VERSION, input: { kind: "download", baseUrl: base }, download: { retryDelayMs: 10 } });
  assert.equal(again.unchanged, true);
  assert.deepEqual(log, [`/mirror/v1.33.4%2Bk3s1/${RELEASE_CHECKSUMS}`]);
  assert.deepEqual(readdirSync(dir).sort(), [BUNDLE_MANIFEST, "k3s", IMAGES_ZST, RELEASE_CHECKSUMS].sort());
});

test("--download: a checksum mismatch leaves no bundle.json and no final-named file; a 404 is not retried; three 500s give up", async (t) => {
  const tmp = tempDir(t);
  const rel = fakeRelease(join(tmp, "release"));
  const wrong = Buffer.from(rel.images);
  wrong[0] = wrong[0]! ^ 1;
  const { base, log } = await releaseServer(t, { k3s: rel.k3s, [IMAGES_ZST]: wrong, [RELEASE_CHECKSUMS]: rel.sums });
  const dir = join(tmp, "b");
  await rejectsWith(
    buildBundle({ dir, version: VERSION, input: { kind: "download", baseUrl: base }, download: { retryDelayMs: 10 } }),
    "BUNDLE",
    new RegExp(`${IMAGES_ZST.replace(/\./g, "\\.")}'s SHA-256 is ${sha(wrong)}, the release's ${RELEASE_CHECKSUMS} says ${sha(rel.images)}`),
  );
  // the directory this run created is gone again: nothing of it is left
  assert.equal(existsSync(dir), false);

  mkdirSync(dir);
  log.length = 0;
  await rejectsWith(buildBundle({ dir, version: "v1.33.5+k3s1", input: { kind: "download", baseUrl: base }, download: { retryDelayMs: 10 } }), "BUNDLE_DOWNLOAD", /HTTP 404 Not Found \(no such file in the release: is the version right\?\)$/);
  assert.equal(log.length, 1);
  assert.deepEqual(readdirSync(dir), []);

  log.length = 0;
  await rejectsWith(buildBundle({ dir, version: VERSION, pinnedSha256: "a".repeat(64), input: { kind: "download", baseUrl: base }, download: { retryDelayMs: 10 } }), "BUNDLE", new RegExp(`says k3s is ${sha(rel.k3s)}, the spec's k3s.sha256 pins a{64}: refused`));
  assert.deepEqual(log, [`/mirror/v1.33.4%2Bk3s1/${RELEASE_CHECKSUMS}`]);
  assert.deepEqual(readdirSync(dir), []);

  const down = await releaseServer(t, {}, (_name, _n, res) => {
    res.writeHead(503).end();
    return true;
  });
  await rejectsWith(buildBundle({ dir, version: VERSION, input: { kind: "download", baseUrl: down.base }, download: { retryDelayMs: 10 } }), "BUNDLE_DOWNLOAD", /HTTP 503 Service Unavailable \(3 attempts\)$/);
  assert.equal(down.log.length, 3);
  assert.deepEqual(readdirSync(dir), []);
});

test("a download that stalls is dropped after the idle time and tried again", async (t) => {
  const tmp = tempDir(t);
  const body = randomBytes(5000);
  let n = 0;
  const server = createServer((_req, res) => {
    if (++n === 1) {
      res.writeHead(200, { "content-length": body.length });
      res.write(body.subarray(0, 100)); // and then nothing
      return;
    }
    res.writeHead(200, { "content-length": body.length }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const notes: string[] = [];
  const got = await downloadFile(`http://127.0.0.1:${(server.address() as AddressInfo).port}/k3s`, join(tmp, "k3s.part"), { idleTimeoutMs: 200, retryDelayMs: 10, log: (l) => notes.push(l) });
  assert.deepEqual(got, { sha256: sha(body), bytes: body.length });
  assert.deepEqual(readFileSync(join(tmp, "k3s.part")), body);
  assert.deepEqual(notes, ["k3s.part: nothing received for 0.2 s; trying again in 0.0 s (attempt 2 of 3)"]);
});

/** The CLI as a user runs it, through main() (with bundle registered here if main.ts does not list it yet). */
function cli(args: string[], cwd: string) {
  const runner = join(cwd, "..", "run-fmc.mjs");
  writeFileSync(
    runner,
    [
      `import { fmc, main } from ${JSON.stringify(pathToFileURL(join(ROOT, "src/cli/main.ts")).href)};`,
      `if (!("bundle" in fmc.subCommands)) fmc.subCommands.bundle = () => import(${JSON.stringify(pathToFileURL(join(ROOT, "src/cli/bundle-commands.ts")).href)}).then((m) => m.bundleCommand);`,
      "await main(process.argv.slice(2));",
    ].join("\n"),
  );
  const r = spawnSync(process.execPath, ["--import", import.meta.resolve("tsx"), runner, ...args], { cwd, encoding: "utf8", env: { ...process.env, NO_COLOR: "1" } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test("the CLI: default directory under .fmc/ with --version and no spec, --json, a tampered binary exits 1 with error[BUNDLE]", async (t) => {
  const tmp = tempDir(t);
  const rel = fakeRelease(join(tmp, "release"));
  const work = join(tmp, "work");
  mkdirSync(work);
  const ok = cli(["bundle", "--version", VERSION, "--from", rel.dir, "--json"], work);
  assert.equal(ok.status, 0, ok.stderr);
  const dir = join(work, ".fmc", "bundle", `k3s-${VERSION}`);
  assert.deepEqual(JSON.parse(ok.stdout), JSON.parse(readFileSync(join(dir, BUNDLE_MANIFEST), "utf8")));
  assert.equal(mode(dir), 0o700);
  assert.equal(readFileSync(join(work, ".fmc", "bundle", ".gitignore"), "utf8").split("\n")[1], "*");

  const bad = Buffer.from(rel.k3s);
  bad[0] = 0;
  writeFileSync(join(tmp, "k3s-bad"), bad);
  const refused = cli(["bundle", "--version", VERSION, "--k3s", join(tmp, "k3s-bad"), "--checksums", join(rel.dir, RELEASE_CHECKSUMS), "-o", "other"], work);
  assert.equal(refused.status, 1);
  assert.match(refused.stderr, new RegExp(`^error\\[BUNDLE\\] k3s's SHA-256 is ${sha(bad)}, the release's ${RELEASE_CHECKSUMS} says ${sha(rel.k3s)}: refused$`, "m"));
  assert.equal(existsSync(join(work, "other", BUNDLE_MANIFEST)), false);

  const both = cli(["bundle", "--from", rel.dir, "--download"], work);
  assert.equal(both.status, 1);
  assert.match(both.stderr, /error\[USAGE\] --from and --download both given/);
  const help = cli(["bundle", "--help"], work);
  assert.equal(help.status, 0);
  assert.match(help.stdout, /Air-gapped clusters: run fmc bundle --download/);
});
