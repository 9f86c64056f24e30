import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { execFileSync, spawn } from "node:child_process";
import { loadOrCreateSecrets } from "../../src/state/secrets.js";
import { fmc, FMC, ROOT, tempDir } from "../helpers.js";

const mode = (p: string) => statSync(p).mode & 0o777;

test("fmc init writes the commented seed spec, and refuses to overwrite it", (t) => {
  const dir = tempDir(t);
  const r = fmc(["init", "-o", "cluster.yaml"], dir);
  assert.equal(r.status, 0, r.stderr);
  const text = readFileSync(join(dir, "cluster.yaml"), "utf8");
  assert.match(text, /^# FlatcarMicroCloud cluster spec/);
  assert.match(text, /name: master1, roles: \[k3s-server\], os: flatcar, address: 10\.17\.4\.21/);
  const again = fmc(["init", "-o", "cluster.yaml"], dir);
  assert.equal(again.status, 1);
  assert.match(again.stderr, /already exists/);
  // ./cluster.yaml is picked up without -f
  const v = fmc(["validate"], dir);
  assert.equal(v.status, 0, v.stderr);
  assert.match(v.stdout, /^cluster\.yaml: valid — 15 hosts \(3 servers, 4 agents\), 2 VIPs, 5 subnets$/m);
});

test("fmc validate: exit 1 and every problem with path, line and hint", (t) => {
  const dir = tempDir(t);
  fmc(["init"], dir);
  const spec = join(dir, "cluster.yaml");
  const text = readFileSync(spec, "utf8")
    .replace("address: 10.17.4.23,", "address: 10.17.4.22,")
    .replace("roles: [identity]", "roles: [identty]")
    .replace("longhornPath: /mnt/longhorn-disk", "longhornPath: longhorn");
  writeFileSync(spec, text);
  const r = fmc(["validate", "-f", spec], dir);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /error hosts\[2\]\.address \(line 27\): 10\.17\.4\.22 is already used by master2/);
  assert.match(r.stderr, /error hosts\[7\]\.roles\[0\] \(line 38\): "identty" is not allowed\n\s+hint: did you mean "identity"\?/);
  assert.match(r.stderr, /error storage\.longhornPath \(line \d+\): "longhorn" is not an absolute path/);
  assert.match(r.stderr, /: 3 error\(s\), 0 warning\(s\)$/m);
  const json = fmc(["validate", "-f", spec, "--json"], dir);
  assert.equal(json.status, 1);
  const parsed = JSON.parse(json.stdout);
  assert.equal(parsed.valid, false);
  assert.deepEqual(parsed.problems.map((p: { path: string }) => p.path).sort(), ["hosts[2].address", "hosts[7].roles[0]", "storage.longhornPath"]);
});

test("fmc render of an invalid spec writes nothing", (t) => {
  const dir = tempDir(t);
  fmc(["init"], dir);
  const spec = join(dir, "cluster.yaml");
  writeFileSync(spec, readFileSync(spec, "utf8").replace("address: 10.17.4.23,", "address: 10.17.4.22,"));
  const r = fmc(["render", "-o", "out"], dir);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /already used by master2/);
  assert.match(r.stderr, /nothing was written/);
  assert.equal(existsSync(join(dir, "out")), false);
  assert.equal(existsSync(join(dir, ".fmc")), false, "no secrets are generated for an invalid spec");
});

test("fmc render: tree, modes, secrets generated once, kept out of git and of the output", (t) => {
  const dir = tempDir(t);
  const r = fmc(["render", "-o", "out"], dir);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^out\/ from built-in seed topology$/m);
  assert.match(r.stdout, /├── ignition\/ 7 files \(7 with secrets, 0600\)/);
  assert.match(r.stdout, /└── topology\.svg/);
  const state = join(dir, ".fmc");
  assert.equal(mode(state), 0o700);
  assert.equal(mode(join(state, "secrets.json")), 0o600);
  assert.equal(readFileSync(join(state, ".gitignore"), "utf8").trim().split("\n").pop(), "*");
  const secrets = JSON.parse(readFileSync(join(state, "secrets.json"), "utf8")).secrets as Record<string, { value: string }>;
  assert.ok(secrets["k3s-token"]!.value.length >= 64);
  for (const [name, s] of Object.entries(secrets)) {
    const v = s.value.startsWith("{") ? JSON.parse(s.value).private : s.value;
    assert.ok(!r.stdout.includes(v) && !r.stderr.includes(v), `secret ${name} was printed`);
  }
  assert.equal(mode(join(dir, "out/k3s/master1/config.yaml")), 0o600);
  assert.equal(mode(join(dir, "out/haproxy/loadbalancer1/haproxy.cfg")), 0o644);
  assert.equal(mode(join(dir, "out/storage/storage1/lvm-plan.sh")), 0o755);
  const ignore = readFileSync(join(dir, "out/.gitignore"), "utf8");
  assert.match(ignore, /^\/k3s\/master1\/config\.yaml$/m);
  assert.doesNotMatch(ignore, /haproxy/);
  // second render: same secrets, byte-identical files
  const snapshot = (root: string): Record<string, string> => {
    const files: Record<string, string> = {};
    const walk = (d: string) => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const p = join(d, e.name);
        if (e.isDirectory()) walk(p);
        else files[p.slice(root.length)] = readFileSync(p, "utf8");
      }
    };
    walk(root);
    return files;
  };
  const first = snapshot(join(dir, "out"));
  const again = fmc(["render", "-o", "out"], dir);
  assert.equal(again.status, 0, again.stderr);
  assert.deepEqual(snapshot(join(dir, "out")), first);
  assert.equal(JSON.parse(readFileSync(join(state, "secrets.json"), "utf8")).secrets["k3s-token"].value, secrets["k3s-token"]!.value);
  assert.deepEqual(readdirSync(dir).sort(), [".fmc", "out"], "no temporary directories are left behind");
});

test("fmc render refuses an output directory it did not write", (t) => {
  const dir = tempDir(t);
  mkdirSync(join(dir, "precious"));
  writeFileSync(join(dir, "precious", "notes.txt"), "mine");
  const r = fmc(["render", "-o", "precious"], dir);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /error\[OUT_NOT_EMPTY\]/);
  assert.equal(readFileSync(join(dir, "precious", "notes.txt"), "utf8"), "mine");
});

test("fmc refuses to run when git tracks its state directory", (t) => {
  const dir = tempDir(t);
  const git = (...args: string[]) => execFileSync("git", args, { cwd: dir, stdio: "ignore" });
  git("init", "-q");
  assert.equal(fmc(["render", "-o", "out"], dir).status, 0);
  git("add", "-f", ".fmc/secrets.json");
  const r = fmc(["render", "-o", "out"], dir);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /error\[STATE_TRACKED\] git tracks files in .*\.fmc: secrets\.json/);
});

test("fmc schema prints a JSON Schema; docs/spec.md is generated from it", (t) => {
  const dir = tempDir(t);
  const r = fmc(["schema"], dir);
  assert.equal(r.status, 0);
  const schema = JSON.parse(r.stdout);
  assert.equal(schema.properties.apiVersion.const, "fmc.dev/v1alpha1");
  assert.ok(schema.properties.hosts.items.properties.roles.items.enum.includes("k3s-server"));
  const d = fmc(["docs", "-o", "spec.md"], dir);
  assert.equal(d.status, 0, d.stderr);
  const generated = readFileSync(join(dir, "spec.md"), "utf8");
  assert.match(generated, /\| `routerId` \| integer \|/);
  const committed = readFileSync(join(ROOT, "docs/spec.md"), "utf8");
  assert.equal(committed, generated, "docs/spec.md is stale: run npm run docs");
});

test("help, unknown commands and unknown options", (t) => {
  const dir = tempDir(t);
  const help = fmc(["--help"], dir);
  assert.equal(help.status, 0);
  assert.match(help.stdout + help.stderr, /render/);
  const rh = fmc(["render", "--help"], dir);
  assert.equal(rh.status, 0);
  assert.match(rh.stdout + rh.stderr, /--out/);
  const bad = fmc(["rendr"], dir);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /unknown command: rendr/);
  const opt = fmc(["render", "--outt", "x"], dir);
  assert.equal(opt.status, 1);
  assert.match(opt.stderr, /unknown option: --outt/);
  assert.equal(existsSync(join(dir, "x")), false);
});

test("the git check fails closed: a repository git won't read refuses, it never passes", (t) => {
  const dir = tempDir(t);
  execFileSync("git", ["init", "-q"], { cwd: dir });
  // git refuses repositories owned by another user ("dubious ownership"); as a non-root
  // user, a broken repository is the way to make git fail
  if (process.getuid?.() === 0) execFileSync("chown", ["-R", "nobody", dir]);
  else writeFileSync(join(dir, ".git/HEAD"), "garbage\n");
  const r = fmc(["render", "-o", "out"], dir);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /error\[STATE_CHECK\] .* is a git work tree, and git could not confirm that .*\.fmc is untracked/);
  assert.equal(existsSync(join(dir, "out")), false, "nothing was rendered");
});

test("a secret store fmc did not write is refused, not half-used", (t) => {
  const dir = tempDir(t);
  mkdirSync(join(dir, ".fmc"), { mode: 0o700 });
  writeFileSync(join(dir, ".fmc/secrets.json"), JSON.stringify({ version: 1, secrets: { "k3s-token": { kind: "rsa", value: "x" } } }));
  const r = fmc(["render", "-o", "out"], dir);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /error\[STATE_CORRUPT\] .*secrets\.json is not a secret store fmc wrote: secrets\.k3s-token\.kind/);
  assert.equal(existsSync(join(dir, "out")), false);
});

test("fmc secrets: list names only; show reveals exactly one value on purpose", (t) => {
  const dir = tempDir(t);
  const list = fmc(["secrets", "list"], dir);
  assert.equal(list.status, 0, list.stderr);
  const store = JSON.parse(readFileSync(join(dir, ".fmc/secrets.json"), "utf8")).secrets as Record<string, { value: string }>;
  assert.match(list.stdout, /^grafana-admin\s+Grafana admin \(password\)$/m);
  for (const [name, s] of Object.entries(store)) assert.ok(!list.stdout.includes(s.value.slice(0, 20)), `${name} leaked into the list`);
  const show = fmc(["secrets", "show", "grafana-admin"], dir);
  assert.equal(show.status, 0, show.stderr);
  assert.equal(show.stdout, `${store["grafana-admin"]!.value}\n`);
  const key = fmc(["secrets", "show", "admin-ssh"], dir);
  assert.match(key.stdout, /^-----BEGIN OPENSSH PRIVATE KEY-----\n/);
  const typo = fmc(["secrets", "show", "grafana-admn"], dir);
  assert.equal(typo.status, 1);
  assert.match(typo.stderr, /error\[SECRET_UNKNOWN\] this spec has no secret named grafana-admn\n\s+hint: did you mean "grafana-admin"\?/);
  assert.equal(typo.stdout, "");
});

test("a tampered secret is refused, never rendered (a WireGuard key with a PostUp line)", (t) => {
  const dir = tempDir(t);
  assert.equal(fmc(["render", "-o", "out"], dir).status, 0);
  const file = join(dir, ".fmc/secrets.json");
  const store = JSON.parse(readFileSync(file, "utf8"));
  store.secrets["wireguard-psk"].value = "abc\nPostUp = touch /tmp/pwned";
  writeFileSync(file, JSON.stringify(store));
  const r = fmc(["render", "-o", "out"], dir);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /error\[STATE_CORRUPT\] .*secrets\.wireguard-psk\.value: is not a value fmc generates for its kind/);
  assert.doesNotMatch(readFileSync(join(dir, "out/wireguard/vps1/wg0.conf"), "utf8"), /PostUp/);
  store.secrets["wireguard-psk"].value = "A".repeat(43) + "=";
  store.secrets["admin-ssh"].value = "notjson";
  writeFileSync(file, JSON.stringify(store));
  const ssh = fmc(["render", "-o", "out"], dir);
  assert.equal(ssh.status, 1);
  assert.match(ssh.stderr, /error\[STATE_CORRUPT\] .*secrets\.admin-ssh\.value/);
  assert.doesNotMatch(ssh.stderr, /internal error/);
});

test("concurrent first runs agree on one set of secrets", async (t) => {
  for (let round = 0; round < 3; round++) {
    const dir = tempDir(t);
    const runs = Array.from({ length: 4 }, (_, i) =>
      new Promise<string>((resolve) => {
        const child = spawn(process.execPath, [FMC, "render", "-o", `out${i}`], { cwd: dir, stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, NO_COLOR: "1" } });
        let stderr = "";
        child.stderr.on("data", (d) => (stderr += d));
        child.on("close", (code) => resolve(code === 0 ? "ok" : `exit ${code}: ${stderr}`));
      }),
    );
    assert.deepEqual(await Promise.all(runs), ["ok", "ok", "ok", "ok"]);
    const token = JSON.parse(readFileSync(join(dir, ".fmc/secrets.json"), "utf8")).secrets["k3s-token"].value as string;
    for (let i = 0; i < 4; i++) assert.match(readFileSync(join(dir, `out${i}/k3s/master1/config.yaml`), "utf8"), new RegExp(`token: ${token}`), `round ${round}, out${i}`);
  }
});

test("every generated admin key is a key OpenSSH accepts (ssh2 drops leading zero bytes 1 time in 256)", (t) => {
  const dir = tempDir(t);
  const needed = Array.from({ length: 600 }, (_, i) => ({ name: `admin-${i}`, kind: "ssh-ed25519" as const, purpose: "test" }));
  const secrets = loadOrCreateSecrets({ path: join(dir, ".fmc") }, needed);
  const publics = needed.map((n) => (JSON.parse(secrets.get(n.name)) as { public: string }).public);
  writeFileSync(join(dir, "keys"), publics.join("\n") + "\n");
  const r = execFileSync("ssh-keygen", ["-l", "-f", join(dir, "keys")], { encoding: "utf8" });
  assert.equal(r.trim().split("\n").filter((l) => / fmc-admin \(ED25519\)$/.test(l)).length, 600);
});

test("the phase names in --help are the phase list's", async () => {
  const { PHASE_NAMES } = await import("../../src/cli/session-args.js");
  const { PHASES } = await import("../../src/phases/index.js");
  assert.deepEqual([...PHASE_NAMES], PHASES.map((p) => p.name));
});
