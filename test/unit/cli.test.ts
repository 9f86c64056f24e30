import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { loadOrCreateSecrets, type SecretName } from "../../src/state/secrets.js";
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
  assert.match(v.stdout, /^cluster\.yaml: valid — 15 hosts \(3 servers, 4 agents\), 2 VIPs, 5 subnets, 2 warnings$/m);
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
  // the lines as the edited file has them (the seed's comments may grow)
  const lineOf = (re: RegExp) => text.split("\n").findIndex((l) => re.test(l)) + 1;
  assert.match(r.stderr, new RegExp(`error hosts\\[2\\]\\.address \\(line ${lineOf(/name: master3,.*address: 10\.17\.4\.22,/)}\\): 10\\.17\\.4\\.22 is already used by master2`));
  assert.match(r.stderr, new RegExp(`error hosts\\[7\\]\\.roles\\[0\\] \\(line ${lineOf(/roles: \[identty\]/)}\\): "identty" is not allowed\n\\s+hint: did you mean "identity"\\?`));
  assert.match(r.stderr, /error storage\.longhornPath \(line \d+\): "longhorn" is not an absolute path/);
  assert.match(r.stderr, /: 3 error\(s\), 2 warning\(s\)$/m);
  const json = fmc(["validate", "-f", spec, "--json"], dir);
  assert.equal(json.status, 1);
  const parsed = JSON.parse(json.stdout);
  assert.equal(parsed.valid, false);
  assert.deepEqual(parsed.problems.map((p: { path: string }) => p.path).sort(), ["edge", "edge.traefikBinary", "hosts[2].address", "hosts[7].roles[0]", "storage.longhornPath"]);
  // the two are the seed's warnings (no Traefik binary, no origin certificate yet), not errors
  assert.deepEqual(parsed.problems.filter((p: { severity: string }) => p.severity !== "error").map((p: { path: string }) => p.path).sort(), ["edge", "edge.traefikBinary"]);
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
  const needed = Array.from({ length: 600 }, (_, i) => ({ name: `admin-${i}` as SecretName, kind: "ssh-ed25519" as const, purpose: "test" }));
  const secrets = loadOrCreateSecrets({ path: join(dir, ".fmc") }, needed);
  const publics = needed.map((n) => (JSON.parse(secrets.get(n.name)) as { public: string }).public);
  writeFileSync(join(dir, "keys"), publics.join("\n") + "\n");
  const r = execFileSync("ssh-keygen", ["-l", "-f", join(dir, "keys")], { encoding: "utf8" });
  assert.equal(r.trim().split("\n").filter((l) => / fmc-admin \(ED25519\)$/.test(l)).length, 600);
});

// ---- the command line's habits: help, version, did you mean, colour ----

const PACKAGE_VERSION = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;
/** The environment of a user's shell: no NO_COLOR, no CI or TEST (citty drops colour for those), a colour terminal type. */
const USER_ENV = { NO_COLOR: undefined, CI: undefined, TEST: undefined, TERM: "xterm-256color" };

type Cmd = { meta?: unknown; subCommands?: unknown; run?: unknown };
const resolved = async <T>(v: unknown): Promise<T> => (typeof v === "function" ? await (v as () => T | Promise<T>)() : ((await v) as T));

/** Every command path under fmc, e.g. ["etcd", "status"], found by loading the command modules. */
async function commandPaths(): Promise<string[][]> {
  const { COMMANDS, COMMAND_NAMES } = await import("../../src/cli/commands.js");
  const paths: string[][] = [];
  const walk = async (cmd: Cmd, path: string[]) => {
    paths.push(path);
    const subs = await resolved<Record<string, unknown> | undefined>(cmd.subCommands);
    for (const [name, sub] of Object.entries(subs ?? {})) await walk(await resolved<Cmd>(sub), [...path, name]);
  };
  for (const name of COMMAND_NAMES) await walk(await COMMANDS[name].load(), [name]);
  return paths;
}

/** Runs fmc without waiting for it, so that many can run at once. */
function fmcAsync(args: string[], cwd: string): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [FMC, ...args], { cwd, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...USER_ENV } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (status) => done({ status, stdout, stderr }));
  });
}

test("fmc --help lists every command of the table, and each table entry loads the command of its name", async (t) => {
  const dir = tempDir(t);
  const { COMMANDS, COMMAND_NAMES } = await import("../../src/cli/commands.js");
  const { fmc: root } = await import("../../src/cli/main.js");
  assert.deepEqual(Object.keys(root.subCommands), COMMAND_NAMES);
  const help = fmc(["--help"], dir);
  assert.equal(help.status, 0, help.stderr);
  assert.equal(help.stderr, "");
  assert.match(help.stdout, /^USAGE fmc <command> \[OPTIONS\]$/m);
  for (const name of COMMAND_NAMES) {
    assert.match(help.stdout, new RegExp(`^  ${name} +${COMMANDS[name].summary.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`, "m"), `${name} is not listed`);
    const cmd = await COMMANDS[name].load();
    assert.equal((await resolved<{ name?: string }>(cmd.meta)).name, name, `COMMANDS.${name} loads another command`);
  }
  // no arguments at all: the same help
  assert.equal(fmc([], dir).stdout, help.stdout);
});

test("fmc --help loads no command module and no library, bundled or not", (t) => {
  const dir = tempDir(t);
  const log = join(dir, "loaded.txt");
  // ESM loads (the modules tsc wrote) and CommonJS requires (the bundle's libraries) are logged
  writeFileSync(join(dir, "hooks.mjs"), `import { appendFileSync } from "node:fs";\nexport async function load(url, context, next) { appendFileSync(${JSON.stringify(log)}, url + "\\n"); return next(url, context); }\n`);
  writeFileSync(join(dir, "register.mjs"), `import { register } from "node:module";\nimport Module from "node:module";\nimport { appendFileSync } from "node:fs";\nregister("./hooks.mjs", import.meta.url);\nconst load = Module._load;\nModule._load = function (request, ...rest) { appendFileSync(${JSON.stringify(log)}, "require:" + request + "\\n"); return load.call(this, request, ...rest); };\n`);
  const loadedBy = (env: Record<string, string>, ...args: string[]) => {
    rmSync(log, { force: true });
    const r = spawnSync(process.execPath, ["--import", join(dir, "register.mjs"), FMC, ...args], { cwd: dir, encoding: "utf8", env: { ...process.env, ...env } });
    assert.equal(r.status, 0, r.stderr);
    return readFileSync(log, "utf8").trim().split("\n");
  };
  const library = (u: string) => /-commands\.js$|\/node_modules\//.test(u) || (u.startsWith("require:") && !u.startsWith("require:node:"));
  // the modules tsc wrote: main.js alone, no command module
  const unbundled = loadedBy({ FMC_UNBUNDLED: "1" }, "--help");
  assert.ok(unbundled.some((u) => u.endsWith("/dist/cli/main.js")), "the hook saw fmc start");
  assert.deepEqual(unbundled.filter(library), []);
  assert.ok(loadedBy({ FMC_UNBUNDLED: "1" }, "secrets", "--help").some((u) => u.endsWith("/dist/cli/secrets-commands.js")), "a command's own help loads that command");
  // the bundle (what bin/fmc.js runs by default): no module of dist/ besides, no library required
  const bundled = loadedBy({}, "--help");
  assert.ok(!bundled.some((u) => u.endsWith("/dist/cli/main.js")), "the bundle ran, not the modules");
  assert.deepEqual(bundled.filter(library), []);
  // while a command that reaches hosts does require its library (the hook does see requires)
  assert.ok(loadedBy({}, "apply", "--help").some((u) => u === "require:ssh2"));
});

test("fmc --version and -v print package.json's version; fmc help is fmc --help", (t) => {
  const dir = tempDir(t);
  for (const flag of ["--version", "-v"]) {
    const r = fmc([flag], dir);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, `${PACKAGE_VERSION}\n`);
  }
  assert.match(fmc(["render", "--help"], dir).stdout, new RegExp(`\\(fmc render v${PACKAGE_VERSION.replaceAll(".", "\\.")}\\)`));
  // a command's own --version is its own (fmc bundle --version VERSION), not fmc's
  const bundle = fmc(["bundle", "--version", "v1.31.4+k3s1", "--help"], dir);
  assert.equal(bundle.status, 0, bundle.stderr);
  assert.match(bundle.stdout, /^USAGE fmc bundle /m);
  const help = fmc(["help"], dir);
  assert.equal(help.status, 0);
  assert.equal(help.stdout, fmc(["--help"], dir).stdout);
  const sub = fmc(["help", "etcd", "status"], dir);
  assert.equal(sub.status, 0, sub.stderr);
  assert.equal(sub.stdout, fmc(["etcd", "status", "--help"], dir).stdout);
  assert.match(sub.stdout, /^USAGE fmc etcd status /m);
});

test("did you mean: a mistyped command, subcommand or option names the right one; nothing runs", (t) => {
  const dir = tempDir(t);
  const cases: Array<[string[], RegExp]> = [
    [["aply"], /^error\[USAGE\] unknown command: aply\n\s+hint: did you mean "apply"\?/],
    [["valdate", "cluster.yaml"], /unknown command: valdate\n\s+hint: did you mean "validate"\?/],
    [["hepl"], /did you mean "help"\?/],
    [["etcd", "stauts"], /^error\[USAGE\] unknown command: fmc etcd stauts\n\s+hint: did you mean "status"\?/],
    [["certs", "rotat"], /^error\[USAGE\] unexpected argument: rotat\n\s+hint: did you mean "rotate"\?/],
    [["init", "--froce"], /^error\[USAGE\] unknown option: --froce\n\s+hint: did you mean "--force"\?/],
  ];
  for (const [args, expected] of cases) {
    const r = fmc(args, dir);
    assert.equal(r.status, 1, args.join(" "));
    assert.match(r.stderr, expected);
    assert.equal(r.stdout, "", `${args.join(" ")} printed on stdout`);
  }
  const far = fmc(["frobnicate"], dir);
  assert.equal(far.status, 1);
  assert.doesNotMatch(far.stderr, /did you mean/);
  assert.match(far.stderr, /hint: fmc --help lists every command/);
  assert.deepEqual(readdirSync(dir), [], "nothing was written (fmc init --froce did not run)");
});

test("no colour codes when stdout and stderr are pipes, even where citty would colour", async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, "bad.yaml"), "apiVersion: fmc.dev/v1alpha1\nname: x\nhosts: 3\n");
  const runs = await Promise.all(
    [["--help"], ["render", "--help"], ["etcd"], ["aply"], ["render", "--outt"], ["validate", "bad.yaml"], ["etcd", "status", "--help"], ["backup", "postgres", "--help"], ["secrets", "show"]].map((a) => fmcAsync(a, dir)),
  );
  for (const r of runs) {
    assert.ok(!r.stdout.includes("\x1b") && !r.stderr.includes("\x1b"), `colour codes in ${JSON.stringify(r.stdout + r.stderr).slice(0, 200)}`);
    assert.ok(r.stdout.length + r.stderr.length > 0);
  }
  assert.match(runs[5]!.stderr, /error hosts/, "the invalid spec's problems were printed");
});

test("on a terminal help has colours, and NO_COLOR takes them away", (t) => {
  if (spawnSync("script", ["--version"]).status !== 0) return t.skip("script (util-linux) is not installed: no pseudo-terminal to test with");
  const dir = tempDir(t);
  const onTerminal = (env: Record<string, string | undefined>, ...args: string[]) =>
    spawnSync("script", ["-qec", [process.execPath, FMC, ...args].map((a) => `'${a}'`).join(" "), "/dev/null"], { cwd: dir, encoding: "utf8", env: { ...process.env, ...USER_ENV, ...env } }).stdout;
  assert.match(onTerminal({}, "render", "--help"), /\x1b\[36mfmc render \[OPTIONS\]/);
  assert.match(onTerminal({}, "--help"), /\x1b\[/);
  for (const args of [["render", "--help"], ["--help"]]) {
    const plain = onTerminal({ NO_COLOR: "yes" }, ...args);
    assert.match(plain, /USAGE fmc/);
    assert.doesNotMatch(plain, /\x1b/);
  }
});

test("every command's --help exits 0, says nothing on stderr and starts its usage with fmc and its full path", async (t) => {
  const dir = tempDir(t);
  const paths = await commandPaths();
  assert.ok(paths.length > 30, `only ${paths.length} commands found`);
  const results: Array<{ path: string[]; r: Awaited<ReturnType<typeof fmcAsync>> }> = [];
  const queue = [...paths];
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      for (let path = queue.shift(); path; path = queue.shift()) results.push({ path, r: await fmcAsync([...path, "--help"], dir) });
    }),
  );
  for (const { path, r } of results) {
    const name = `fmc ${path.join(" ")}`;
    assert.equal(r.status, 0, `${name} --help: ${r.stderr}`);
    assert.equal(r.stderr, "", name);
    const usage = r.stdout.split("\n").filter((l) => l.startsWith("USAGE "));
    assert.deepEqual(usage.length, 1, `${name}: ${r.stdout}`);
    assert.ok(usage[0] === `USAGE ${name}` || usage[0]!.startsWith(`USAGE ${name} `), `${name}: ${usage[0]}`);
    assert.doesNotMatch(r.stdout, /\/bin\/fmc|undefined/, name);
  }
});

test("plan and apply --help say that a lab's inventory sends them to the lab's hosts", (t) => {
  const dir = tempDir(t);
  for (const cmd of ["plan", "apply"]) {
    const r = fmc([cmd, "--help"], dir);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout.replace(/\s+/g, " "), new RegExp(`lab/inventory\\.json .*fmc lab up writes it.* redirects ${cmd} to the lab's hosts`));
  }
});

test("the phase names in --help are the phase list's", async () => {
  const { PHASE_NAMES } = await import("../../src/cli/session-args.js");
  const { PHASES } = await import("../../src/phases/index.js");
  assert.deepEqual([...PHASE_NAMES], PHASES.map((p) => p.name));
});
