// Every way a K3s binary reaches a node is checked against a SHA-256 that does not come
// from the binary's own source, and refuses when it can't be (issue 21): the install
// script (Ignition's first boot, the k3s phases without a bundle, fmc upgrade) run in bash
// against a fake `curl` that serves a fake release from a temp dir (no network), with an
// air-gapped path, and with a binary already there; the timeouts that keep a stalled
// download from hanging the first boot; and a bundle, held against the spec's k3s.sha256 at
// apply and upgrade time, its binary hashed again on the node before it replaces anything.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { execFile, spawnSync } from "node:child_process";
import { promisify } from "node:util";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { k3sInstallScript, k3sInstallUnit, K3S_INSTALL_ATTEMPTS, K3S_INSTALL_MAX_DELAY_S } from "../../src/render/k3s-install.js";
import { k3sBinaryCommand } from "../../src/k3s/k3s-cli.js";
import { readBundle, type K3sBundle } from "../../src/local/bundle.js";
import { buildBundle } from "../../src/local/bundle-build.js";
import { upgradeBinaryCommand, upgradeRunbook } from "../../src/runbooks/upgrade.js";
import { k3sServers } from "../../src/phases/k3s.js";
import type { PhaseContext } from "../../src/phases/phase.js";
import { FmcError } from "../../src/errors.js";
import type { ClusterContext } from "../../src/state/context.js";
import { contextFor, requireTool, tempDir } from "../helpers.js";

const VERSION = "v1.33.4+k3s1";
const sha = (b: string | Buffer) => createHash("sha256").update(b).digest("hex");
const fakeK3s = (version: string, tag = "fake") => `#!/bin/sh\necho 'k3s version ${version} (${tag})'\necho 'go version go1.24.6'\n`;
const withK3s = (ctx: ClusterContext, k3s: Partial<ClusterContext["spec"]["k3s"]>): ClusterContext => ({ ...ctx, spec: { ...ctx.spec, k3s: { ...ctx.spec.k3s, ...k3s } } });

interface Node {
  /** What the release (as the fake curl serves it) holds: file name -> content. */
  readonly release: Record<string, string>;
  /** A binary already in place before the script runs. */
  readonly installed?: string;
}

interface Ran {
  readonly status: number | null;
  readonly stderr: string;
  /** The binary in place afterwards, if any. */
  readonly bin?: string;
  /** Every curl call's arguments. */
  readonly curls: string[][];
  readonly binDir: string;
}

/**
 * Runs `shell` (an install script) in bash with a `curl` on PATH that serves the release's
 * files from a temp dir by the URL's last part (anything else: HTTP 404, exit 22), and a
 * `sleep` that does not sleep. `binDir` is where the script was told to install.
 */
function run(t: { after: (fn: () => void) => void }, make: (binDir: string, dir: string) => string, node: Node): Ran {
  const dir = tempDir(t);
  const fake = join(dir, "fake");
  const rel = join(dir, "release");
  const binDir = join(dir, "opt", "bin");
  mkdirSync(fake);
  mkdirSync(rel);
  for (const [name, content] of Object.entries(node.release)) writeFileSync(join(rel, name), content);
  if (node.installed !== undefined) {
    mkdirSync(binDir, { recursive: true });
    writeFileSync(join(binDir, "k3s"), node.installed, { mode: 0o755 });
  }
  writeFileSync(
    join(fake, "curl"),
    [
      "#!/bin/bash",
      `printf '%s\\0' "$@" >> ${dir}/curl.log; printf '\\n' >> ${dir}/curl.log`,
      'out=; url=; while [ $# -gt 0 ]; do case "$1" in -o) out=$2; shift 2;; *) url=$1; shift;; esac; done',
      `f=${rel}/"\${url##*/}"; [ -f "$f" ] || exit 22; cp "$f" "$out"`,
    ].join("\n"),
    { mode: 0o755 },
  );
  writeFileSync(join(fake, "sleep"), "#!/bin/sh\nexit 0\n", { mode: 0o755 });
  writeFileSync(join(dir, "install.sh"), make(binDir, dir));
  const r = spawnSync("bash", [join(dir, "install.sh")], { encoding: "utf8", env: { ...process.env, PATH: `${fake}:${process.env.PATH}` } });
  const log = existsSync(join(dir, "curl.log")) ? readFileSync(join(dir, "curl.log"), "utf8") : "";
  const curls = log.split("\n").filter(Boolean).map((l) => l.split("\0").filter(Boolean));
  const binPath = join(binDir, "k3s");
  return { status: r.status, stderr: r.stderr, bin: existsSync(binPath) ? readFileSync(binPath, "utf8") : undefined, curls, binDir };
}

const good = fakeK3s(VERSION);
const release = (sums: string, k3s = good) => ({ k3s, "sha256sum-amd64.txt": sums });
const sumsFor = (k3s: string, name = "k3s") => `${sha(k3s)}  ${name}\n${sha("arm")}  k3s-arm64\n`;
const script = (ctx: ClusterContext) => (binDir: string) => k3sInstallScript(ctx, binDir);

test("download: a checksum file without a k3s line installs nothing and says why; a mismatch is refused; a match is installed", (t) => {
  const ctx = contextFor();
  const missing = run(t, script(ctx), { release: release(`${sha("arm")}  k3s-arm64\n${sha("x")}  k3s-airgap-images-amd64.tar.zst\n`) });
  assert.notEqual(missing.status, 0, "refused");
  assert.equal(missing.bin, undefined, "no binary installed");
  assert.match(missing.stderr, /k3s v1\.33\.4\+k3s1 not installed: .*\/sha256sum-amd64\.txt has no line for k3s/);
  // a line that only ends in "k3s" is not the binary's
  const other = run(t, script(ctx), { release: release(`${sha(good)}  k3s-arm64\n`) });
  assert.notEqual(other.status, 0);
  assert.equal(other.bin, undefined);
  const mismatch = run(t, script(ctx), { release: release(sumsFor("another binary")) });
  assert.notEqual(mismatch.status, 0);
  assert.equal(mismatch.bin, undefined);
  assert.match(mismatch.stderr, new RegExp(`SHA-256 is ${sha(good)}, expected ${sha("another binary")}`));
  // two lines for k3s that disagree: no single expected value, refused
  const twice = run(t, script(ctx), { release: release(`${sha(good)}  k3s\n${sha("x")}  k3s\n`) });
  assert.notEqual(twice.status, 0);
  assert.equal(twice.bin, undefined);
  const ok = run(t, script(ctx), { release: release(sumsFor(good)) });
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(ok.bin, good);
  assert.deepEqual(readdirSync(ok.binDir).sort(), ["crictl", "ctr", "k3s", "kubectl"]);
});

test("a pinned k3s.sha256 is what the download must match, whatever the release's checksum file says", (t) => {
  const pinned = withK3s(contextFor(), { sha256: sha("the binary the spec trusts") });
  const r = run(t, script(pinned), { release: release(sumsFor(good)) });
  assert.notEqual(r.status, 0);
  assert.equal(r.bin, undefined);
  const ok = run(t, script(withK3s(contextFor(), { sha256: sha(good) })), { release: release(sumsFor("other")) });
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(ok.bin, good);
});

test("airgapPath: without k3s.sha256 nothing is installed (nothing to check it against); with it, a mismatch is refused and a match installed; nothing is downloaded", (t) => {
  const place = (content: string) => {
    const d = tempDir(t);
    writeFileSync(join(d, "k3s"), content, { mode: 0o755 });
    return join(d, "k3s");
  };
  const unpinned = run(t, script(withK3s(contextFor(), { airgapPath: place(good) })), { release: {} });
  assert.notEqual(unpinned.status, 0);
  assert.equal(unpinned.bin, undefined);
  assert.match(unpinned.stderr, /k3s\.airgapPath.*k3s\.sha256/);
  const wrong = run(t, script(withK3s(contextFor(), { airgapPath: place(fakeK3s(VERSION, "tampered")), sha256: sha(good) })), { release: {} });
  assert.notEqual(wrong.status, 0);
  assert.equal(wrong.bin, undefined);
  const right = run(t, script(withK3s(contextFor(), { airgapPath: place(good), sha256: sha(good) })), { release: {} });
  assert.equal(right.status, 0, right.stderr);
  assert.equal(right.bin, good);
  assert.deepEqual([unpinned, wrong, right].map((r) => r.curls.length), [0, 0, 0]);
});

test("fmc upgrade's download (another version than the spec's) is refused without a k3s line, and installed with a matching one", (t) => {
  const to = "v1.33.5+k3s1";
  const pinned = withK3s(contextFor(), { sha256: sha(good) });
  const next = fakeK3s(to);
  const cmd = (binDir: string) => k3sBinaryCommand(pinned, to, binDir, undefined).command.shell;
  const missing = run(t, cmd, { release: release(`${sha("arm")}  k3s-arm64\n`, next), installed: good });
  assert.notEqual(missing.status, 0);
  assert.equal(missing.bin, good, "the old binary stays");
  const ok = run(t, cmd, { release: release(sumsFor(next), next), installed: good });
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(ok.bin, next);
});

test("the version in place is matched exactly (k3s --version's first line): v1.33.4+k3s10 is not v1.33.4+k3s1", (t) => {
  const ctx = contextFor();
  const near = fakeK3s("v1.33.4+k3s10");
  const r = run(t, script(ctx), { release: release(sumsFor(good)), installed: near });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.bin, good, "replaced by the pinned version");
  // a later line naming the version does not count either
  const later = run(t, script(ctx), { release: release(sumsFor(good)), installed: `#!/bin/sh\necho 'k3s version v1.32.1+k3s1 (x)'\necho 'built after ${VERSION}'\n` });
  assert.equal(later.bin, good);
  // the exact version: nothing downloaded, nothing changed
  const same = run(t, script(ctx), { release: {}, installed: good });
  assert.equal(same.status, 0, same.stderr);
  assert.equal(same.curls.length, 0);
  assert.equal(same.bin, good);
});

test("a stalled download can't hang the first boot: curl gives up on a dead connection or transfer, and k3s-install.service has a finite start timeout", async (t) => {
  const ctx = contextFor();
  const r = run(t, script(ctx), { release: release(sumsFor(good)) });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.curls.length, 2);
  for (const args of r.curls) {
    const opt = (name: string) => {
      const i = args.indexOf(name);
      return i < 0 ? undefined : Number(args[i + 1]);
    };
    assert.ok(opt("--connect-timeout")! > 0, `--connect-timeout in ${args.join(" ")}`);
    assert.ok(opt("--speed-limit")! > 0 && opt("--speed-time")! > 0, `--speed-limit/--speed-time in ${args.join(" ")}`);
    assert.ok(opt("--max-time")! > 0, `--max-time in ${args.join(" ")}`);
  }
  // the real curl takes these options and still downloads through them (a loopback server)
  const body = "k3s binary bytes\n";
  const server = createServer((_req, res) => res.end(body));
  await new Promise<void>((res) => server.listen(0, "127.0.0.1", res));
  t.after(() => server.close());
  const dir = tempDir(t);
  const args = r.curls[0]!.slice(0, -1).map((a, i, all) => (all[i - 1] === "-o" ? join(dir, "out") : a));
  // asynchronously: the server answers from this process's event loop
  await promisify(execFile)("curl", [...args, `http://127.0.0.1:${(server.address() as AddressInfo).port}/k3s`], { timeout: 30_000 });
  assert.equal(readFileSync(join(dir, "out"), "utf8"), body);
  const unit = k3sInstallUnit(ctx);
  const timeout = /^TimeoutStartSec=(.+)$/m.exec(unit)?.[1];
  assert.ok(timeout, unit);
  const span = spawnSync("systemd-analyze", ["timespan", timeout], { encoding: "utf8" });
  assert.equal(span.status, 0, span.stderr);
  const us = Number(/μs: (\d+)/.exec(span.stdout)?.[1]);
  assert.ok(us > 0 && us < 24 * 3600 * 1e6, `TimeoutStartSec=${timeout}: finite (${span.stdout.trim()})`);
  // longer than the script's own pauses between attempts: systemd does not cut a retry loop that is still trying
  let pauses = 0;
  for (let a = 1, d = 5; a < K3S_INSTALL_ATTEMPTS; a++, d = Math.min(d * 2, K3S_INSTALL_MAX_DELAY_S)) pauses += d;
  assert.ok(us / 1e6 > pauses, `${us / 1e6} s > ${pauses} s of pauses`);
  assert.match(unit, /^Restart=on-failure$/m, "systemd starts it again after a failure or a timeout");
});

// --- a bundle: held against the spec's pin, hashed again on the node ---------------------

/** A bundle assembled by fmc bundle from a fake release whose own checksum file vouches for its binary. */
async function bundleOf(t: { after: (fn: () => void) => void }, k3s: string): Promise<K3sBundle> {
  const dir = tempDir(t);
  writeFileSync(join(dir, "k3s"), k3s);
  writeFileSync(join(dir, "sha256sum-amd64.txt"), sumsFor(k3s));
  const r = await buildBundle({ dir: join(dir, "bundle"), version: VERSION, input: { kind: "files", files: { k3s: join(dir, "k3s"), "sha256sum-amd64.txt": join(dir, "sha256sum-amd64.txt") } }, log: () => undefined });
  return r.bundle;
}

const refusedBundle = (e: unknown) => e instanceof FmcError && e.code === "BUNDLE" && /its k3s has SHA-256 [0-9a-f]{64}, the spec's k3s\.sha256 pins [0-9a-f]{64}/.test(e.message);

function phaseContext(render: ClusterContext, bundle: K3sBundle): PhaseContext {
  return {
    render,
    mask: (s) => s,
    loginUser: () => "core",
    facts: new Map(),
    k3s: { bundle: () => bundle, joinToken: "abcdef.0123456789abcdef", joinTokenTtlMin: 60, markBootstrapped: () => undefined, forgetBootstrap: () => false },
  };
}

test("a bundle whose binary is not the spec's k3s.sha256 is refused at apply (facts and install) and at upgrade, though its own checksum file and manifest agree", async (t) => {
  const bundle = await bundleOf(t, fakeK3s(VERSION, "from a bundle nobody pinned"));
  const pinned = withK3s(contextFor(), { sha256: sha(good) });
  const master1 = pinned.topo.host("master1");
  assert.throws(() => k3sServers.facts(phaseContext(pinned, bundle), master1), refusedBundle);
  assert.throws(() => k3sBinaryCommand(pinned, VERSION, "/opt/bin", bundle), refusedBundle);
  assert.throws(() => upgradeRunbook(pinned, "v1.33.3+k3s1", VERSION, undefined, 1, { bundle }), refusedBundle);
  assert.throws(() => readBundle(bundle.dir, VERSION, sha(good)), refusedBundle);
  // the pin is v1.33.4+k3s1's: an upgrade to another version is checked against that version's bundle only
  assert.ok(upgradeRunbook(pinned, VERSION, "v1.33.5+k3s1", undefined, 1, { bundle }).ok);
  // the pinned binary's bundle goes ahead, and a node holding it counts as current
  const right = await bundleOf(t, good);
  const facts = k3sServers.facts(phaseContext(pinned, right), master1);
  const current = facts.guards?.get("k3s-binary-current") ?? "";
  assert.ok(current.includes(sha(good)), current);
  assert.equal(k3sBinaryCommand(pinned, VERSION, "/opt/bin", right).command.upload, right.binary.path);
});

test("on the node, the uploaded binary is hashed again before it replaces anything: changed on the way is refused, the old binary stays, no temp file is left", async (t) => {
  const bundle = await bundleOf(t, good);
  const dir = join(tempDir(t), "opt", "bin");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "k3s"), "the old binary\n", { mode: 0o755 });
  const { command } = k3sBinaryCommand(contextFor(), VERSION, dir, bundle);
  assert.equal(command.upload, bundle.binary.path);
  const upload = (bytes: string) => spawnSync("bash", ["-c", command.shell], { input: bytes, encoding: "utf8" });
  for (const bytes of [fakeK3s(VERSION, "changed on the way"), good.slice(0, 20), ""]) {
    const r = upload(bytes);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, new RegExp(`the k3s binary that arrived has SHA-256 ${sha(bytes)}, not the bundle's ${sha(good)}: not installed`));
    assert.equal(readFileSync(join(dir, "k3s"), "utf8"), "the old binary\n");
    assert.deepEqual(readdirSync(dir), ["k3s"]);
  }
  const ok = upload(readFileSync(bundle.binary.path, "utf8"));
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(readFileSync(join(dir, "k3s"), "utf8"), good);
  assert.deepEqual(readdirSync(dir).sort(), ["crictl", "ctr", "k3s", "kubectl"]);
});

test("fmc upgrade's upload, run as the node runs it (/usr/local/bin off Flatcar, a private tmpfs here): a changed binary is refused, the bundle's installed", async (t) => {
  requireTool("unshare");
  const to = "v1.33.5+k3s1";
  const next = fakeK3s(to);
  const dir = tempDir(t);
  writeFileSync(join(dir, "k3s"), next);
  writeFileSync(join(dir, "sha256sum-amd64.txt"), sumsFor(next));
  const bundle = (await buildBundle({ dir: join(dir, "bundle"), version: to, input: { kind: "files", files: { k3s: join(dir, "k3s"), "sha256sum-amd64.txt": join(dir, "sha256sum-amd64.txt") } }, log: () => undefined })).bundle;
  const command = upgradeBinaryCommand(contextFor(), to, bundle);
  writeFileSync(join(dir, "install.sh"), command.shell);
  const onNode = (stdin: string) =>
    spawnSync("unshare", ["--mount", "--propagation", "private", "bash", "-c", `mount -t tmpfs tmpfs /usr/local/bin && mount -t tmpfs tmpfs /opt && { bash ${dir}/install.sh; echo "rc=$?"; cat /usr/local/bin/k3s /opt/bin/k3s 2>/dev/null; }`], { input: stdin, encoding: "utf8" });
  const tampered = onNode(fakeK3s(to, "tampered"));
  assert.match(tampered.stdout, /^rc=1\n$/, tampered.stderr);
  assert.match(tampered.stderr, /not the bundle's/);
  const ok = onNode(next);
  assert.equal(ok.stdout, `rc=0\n${next}`, ok.stderr);
});
