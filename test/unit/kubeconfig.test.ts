// fmc kubeconfig: the command that reads K3s's admin kubeconfig, the rewrite of K3s's real
// file shape (test/fixtures/k3s/k3s.yaml), the refusals, and the merge as the real kubectl
// reads it, compared with kubectl's own merge of the same files.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import {
  adminKubeconfigCommand, apiServerUrl, K3S_ADMIN_KUBECONFIG, KUBECONFIG_ABSENT_EXIT, kubeconfigTarget, mergeKubeconfig, rewriteKubeconfig, writeKubeconfigFile,
} from "../../src/local/kubeconfig.js";
import { adminKubeconfigPath, runKubeconfig, type ServerLink } from "../../src/cli/kubeconfig-commands.js";
import { RecordingTransport, type ExecResult } from "../../src/hosts/transport.js";
import { FmcError } from "../../src/errors.js";
import { contextFor, requireTool, ROOT, tempDir } from "../helpers.js";

const K3S_YAML = readFileSync(join(ROOT, "test/fixtures/k3s/k3s.yaml"), "utf8");
const FIXTURE = parse(K3S_YAML) as { clusters: [{ cluster: Record<string, string> }]; users: [{ user: Record<string, string> }] };
const CA = FIXTURE.clusters[0].cluster["certificate-authority-data"]!;
const CERT = FIXTURE.users[0].user["client-certificate-data"]!;
const KEY = FIXTURE.users[0].user["client-key-data"]!;
const SERVER = "https://10.17.5.10:6443";
const NAME = "flatcarmicrocloud";

requireTool("kubectl");

/** The real kubectl, never reading this machine's own kubeconfig. */
function kubectl(args: string[], env: Record<string, string> = {}): { code: number | null; out: string; err: string } {
  const { KUBECONFIG: _k, ...rest } = process.env;
  const r = spawnSync("kubectl", args, { encoding: "utf8", env: { ...rest, HOME: "/nonexistent", ...env } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

interface View {
  clusters: { name: string; cluster: Record<string, unknown> }[];
  users: { name: string; user: Record<string, unknown> }[];
  contexts: { name: string; context: Record<string, unknown> }[];
  "current-context": string;
}

function view(file: string, extra: string[] = []): View {
  const r = kubectl(["config", "view", "--raw", "-o", "json", "--kubeconfig", file, ...extra]);
  assert.equal(r.code, 0, r.err);
  return JSON.parse(r.out) as View;
}

function refused(fn: () => unknown, code: string, text?: RegExp) {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof FmcError, String(e));
    assert.equal(e.code, code, e.message);
    assert.ok(e.hint, "a refusal says what to do");
    if (text) assert.match(e.message, text);
    return true;
  });
}

const ours = () => rewriteKubeconfig(K3S_YAML, { clusterName: NAME, server: SERVER });

/** A kubeconfig someone already has: other clusters, comments, a namespace YAML would re-type, a stale insecure entry of ours. */
const EXISTING = `# my clusters, by hand
apiVersion: v1
kind: Config
preferences: {}
clusters:
- cluster:
    server: https://prod.example.com:6443
    certificate-authority-data: ${CA}
    extensions:
    - name: client.authentication.k8s.io/exec
      extension:
        audience: prod
  name: prod
- cluster:
    server: https://192.0.2.9:6443
    insecure-skip-tls-verify: true
  name: ${NAME}
contexts:
- context:
    cluster: prod
    user: prod-user
    namespace: "0755" # quoted: a namespace of digits
  name: prod
- context:
    cluster: ${NAME}
    user: old-user
  name: ${NAME}
current-context: prod
users:
- name: prod-user
  user:
    token: abc.def
- name: old-user
  user:
    username: admin
    password: "yes"
`;

// ---- the command

test("the command prints K3s's admin kubeconfig, says when it is not there, and refuses an odd path", (t) => {
  const c = adminKubeconfigCommand();
  assert.equal(K3S_ADMIN_KUBECONFIG, "/etc/rancher/k3s/k3s.yaml");
  assert.equal(c.display, "cat /etc/rancher/k3s/k3s.yaml");
  assert.equal(c.stdin, undefined);
  const dir = tempDir(t);
  const file = join(dir, "k3s.yaml");
  writeFileSync(file, K3S_YAML, { mode: 0o600 });
  const ok = spawnSync("bash", ["-c", adminKubeconfigCommand(file).shell], { encoding: "utf8" });
  assert.equal(ok.status, 0);
  assert.equal(ok.stdout, K3S_YAML);
  const gone = spawnSync("bash", ["-c", adminKubeconfigCommand(join(dir, "absent.yaml")).shell], { encoding: "utf8" });
  assert.equal(gone.status, KUBECONFIG_ABSENT_EXIT);
  assert.equal(gone.stdout, "");
  assert.match(gone.stderr, /absent\.yaml: no such file \(K3s not installed or not started yet\)/);
  refused(() => adminKubeconfigCommand("etc/k3s.yaml"), "KUBECONFIG_PATH");
  refused(() => adminKubeconfigCommand("/etc/$(reboot)/k3s.yaml"), "KUBECONFIG_PATH");
  refused(() => adminKubeconfigCommand("/etc/../k3s.yaml"), "KUBECONFIG_PATH");
});

test("k3s.serverArgs.write-kubeconfig moves the file the command reads", () => {
  const ctx = contextFor();
  assert.equal(adminKubeconfigPath(ctx), K3S_ADMIN_KUBECONFIG);
  const moved = { ...ctx, spec: { ...ctx.spec, k3s: { ...ctx.spec.k3s, serverArgs: { "write-kubeconfig": "/etc/k3s-admin/admin.yaml" } } } };
  assert.equal(adminKubeconfigPath(moved), "/etc/k3s-admin/admin.yaml");
});

// ---- the rewrite

test("the rewrite names everything after the cluster, points at the API VIP and keeps the CA and the client credentials", (t) => {
  const r = ours();
  assert.deepEqual(r.names, { cluster: NAME, user: `${NAME}-admin`, context: NAME });
  assert.deepEqual(r.cluster, { "certificate-authority-data": CA, server: SERVER });
  assert.deepEqual(r.user, { "client-certificate-data": CERT, "client-key-data": KEY });
  assert.doesNotMatch(r.text, /default|127\.0\.0\.1|insecure/);
  // kubectl reads exactly our three entries from the standalone text
  const file = join(tempDir(t), "ours.yaml");
  writeFileSync(file, r.text, { mode: 0o600 });
  const v = view(file);
  assert.deepEqual(v.clusters, [{ name: NAME, cluster: { server: SERVER, "certificate-authority-data": CA } }]);
  assert.deepEqual(v.users, [{ name: `${NAME}-admin`, user: { "client-certificate-data": CERT, "client-key-data": KEY } }]);
  assert.deepEqual(v.contexts, [{ name: NAME, context: { cluster: NAME, user: `${NAME}-admin` } }]);
  assert.equal(v["current-context"], NAME);
  assert.equal(apiServerUrl("10.17.5.10", 6443), SERVER);
});

test("the rewrite refuses a kubeconfig that would trust any certificate or cannot verify the API", () => {
  const opts = { clusterName: NAME, server: SERVER };
  const insecure = K3S_YAML.replace("    server: https://127.0.0.1:6443", "    insecure-skip-tls-verify: true\n    server: https://127.0.0.1:6443");
  refused(() => rewriteKubeconfig(insecure, opts), "KUBECONFIG_INSECURE", /insecure-skip-tls-verify: "true"/);
  // kubectl reads YAML 1.1: "yes" is true there
  refused(() => rewriteKubeconfig(insecure.replace("insecure-skip-tls-verify: true", "insecure-skip-tls-verify: yes"), opts), "KUBECONFIG_INSECURE");
  // false is what kubectl does anyway: accepted, and not carried over
  assert.doesNotMatch(rewriteKubeconfig(insecure.replace("insecure-skip-tls-verify: true", "insecure-skip-tls-verify: false"), opts).text, /insecure/);
  const noCa = K3S_YAML.replace(/    certificate-authority-data: .*\n/, "");
  refused(() => rewriteKubeconfig(noCa, opts), "KUBECONFIG_NO_CA");
  refused(() => rewriteKubeconfig(K3S_YAML.replace(/certificate-authority-data: .*/, "certificate-authority: /var/lib/rancher/k3s/server/tls/server-ca.crt"), opts), "KUBECONFIG_NO_CA", /only a certificate-authority path/);
  refused(() => rewriteKubeconfig(K3S_YAML.replace(CA, Buffer.from("not a certificate").toString("base64")), opts), "KUBECONFIG_NO_CA");
  refused(() => rewriteKubeconfig(K3S_YAML.replace(CA, "'%%%%'"), opts), "KUBECONFIG_NO_CA");
});

test("the rewrite refuses a file of another shape, a name that is not a DNS label and a server that is not https", () => {
  const opts = { clusterName: NAME, server: SERVER };
  refused(() => rewriteKubeconfig(K3S_YAML.replace(/    client-key-data: .*\n/, ""), opts), "KUBECONFIG_FORMAT", /no client certificate and key/);
  refused(() => rewriteKubeconfig("clusters: [unclosed", opts), "KUBECONFIG_FORMAT", /not YAML/);
  refused(() => rewriteKubeconfig("- a list\n", opts), "KUBECONFIG_FORMAT");
  refused(() => rewriteKubeconfig(K3S_YAML.replace("kind: Config", "kind: Pod"), opts), "KUBECONFIG_FORMAT");
  refused(() => rewriteKubeconfig(K3S_YAML.replace("current-context: default", "current-context: other"), opts), "KUBECONFIG_FORMAT", /no contexts entry named "other"/);
  refused(() => rewriteKubeconfig(K3S_YAML.replace("    user: default\n", "    user: nobody\n"), opts), "KUBECONFIG_FORMAT", /no users entry named "nobody"/);
  for (const bad of ["", "Prod", "a_b", "-x", "x-", "a.b", "a b", "x".repeat(64), "prod\nname: evil"]) {
    refused(() => rewriteKubeconfig(K3S_YAML, { clusterName: bad, server: SERVER }), "KUBECONFIG_NAME");
  }
  for (const bad of ["http://10.17.5.10:6443", "https://10.17.5.10", "https://10.17.5.10:6443/path", "https://u:p@10.17.5.10:6443", "https://10.17.5.10:70000"]) {
    refused(() => rewriteKubeconfig(K3S_YAML, { clusterName: NAME, server: bad }), "KUBECONFIG_SERVER");
  }
  refused(() => apiServerUrl("10.17.5.300", 6443), "KUBECONFIG_SERVER");
});

// ---- the merge, as kubectl reads it

test("into no file: ~/.kube is created 0700, the config 0600 with our entries current", async (t) => {
  const home = tempDir(t);
  const target = kubeconfigTarget({ env: {}, home });
  assert.equal(target, join(home, ".kube", "config"));
  const w = await writeKubeconfigFile(target, (existing) => mergeKubeconfig(existing, ours()).text);
  assert.deepEqual(w, { path: target, created: true, mode: 0o600, narrowedFrom: undefined });
  assert.equal(statSync(join(home, ".kube")).mode & 0o777, 0o700);
  assert.equal(statSync(target).mode & 0o777, 0o600);
  const v = view(target);
  assert.deepEqual(v.clusters.map((c) => c.name), [NAME]);
  assert.equal(v["current-context"], NAME);
  const ctx = kubectl(["config", "get-contexts", "--kubeconfig", target, "--no-headers"]);
  assert.equal(ctx.code, 0, ctx.err);
  assert.match(ctx.out, new RegExp(`^\\*\\s+${NAME}\\s+${NAME}\\s+${NAME}-admin\\s*$`));
  assert.deepEqual(readdirSync(join(home, ".kube")).sort(), ["config"], "no lock or temp file left behind");
});

test("into an existing file: ours replaced, everything else exactly as kubectl read it before, current context kept unless asked", async (t) => {
  const dir = tempDir(t);
  const file = join(dir, "config");
  writeFileSync(file, EXISTING, { mode: 0o644 });
  const before = view(file);
  const w = await writeKubeconfigFile(file, (existing) => mergeKubeconfig(existing, ours(), { setCurrent: false }).text);
  assert.equal(w.narrowedFrom, 0o644);
  assert.equal(statSync(file).mode & 0o777, 0o600, "a secret is never left world-readable");
  const after = view(file);
  const others = (v: View) => ({
    clusters: v.clusters.filter((c) => c.name !== NAME),
    users: v.users.filter((u) => u.name !== `${NAME}-admin`),
    contexts: v.contexts.filter((c) => c.name !== NAME),
  });
  assert.deepEqual(others(after), others(before));
  assert.equal((after.contexts.find((c) => c.name === "prod")!.context as { namespace: string }).namespace, "0755");
  assert.equal(after["current-context"], "prod", "--no-set-current keeps the current context");
  // ours, once each, and the stale insecure entry gone
  assert.deepEqual(after.clusters.filter((c) => c.name === NAME), [{ name: NAME, cluster: { server: SERVER, "certificate-authority-data": CA } }]);
  assert.deepEqual(after.contexts.filter((c) => c.name === NAME), [{ name: NAME, context: { cluster: NAME, user: `${NAME}-admin` } }]);
  // kubectl's own view of our context alone
  const mini = view(file, ["--minify", "--context", NAME]);
  assert.deepEqual(mini.clusters, [{ name: NAME, cluster: { server: SERVER, "certificate-authority-data": CA } }]);
  assert.deepEqual(mini.users, [{ name: `${NAME}-admin`, user: { "client-certificate-data": CERT, "client-key-data": KEY } }]);
  // the user's comments survive
  assert.match(readFileSync(file, "utf8"), /^# my clusters, by hand\n/);
  assert.match(readFileSync(file, "utf8"), /namespace: "0755" # quoted: a namespace of digits/);

  // asked: ours becomes current; merging again changes nothing more
  await writeKubeconfigFile(file, (existing) => mergeKubeconfig(existing, ours(), { setCurrent: true }).text);
  const once = readFileSync(file, "utf8");
  assert.equal(view(file)["current-context"], NAME);
  const again = mergeKubeconfig(once, ours(), { setCurrent: true });
  assert.equal(again.text, once, "a second merge is a no-op");
  assert.deepEqual(again.added, []);
  assert.deepEqual(again.replaced, [`cluster ${NAME}`, `user ${NAME}-admin`, `context ${NAME}`]);
});

test("the merge agrees with kubectl's own merge of the same files (KUBECONFIG=ours:existing kubectl config view --flatten)", (t) => {
  const dir = tempDir(t);
  const oursFile = join(dir, "ours.yaml");
  const existing = join(dir, "existing.yaml");
  const merged = join(dir, "merged.yaml");
  writeFileSync(oursFile, ours().text, { mode: 0o600 });
  writeFileSync(existing, EXISTING, { mode: 0o600 });
  writeFileSync(merged, mergeKubeconfig(EXISTING, ours(), { setCurrent: true }).text, { mode: 0o600 });
  const theirs = kubectl(["config", "view", "--flatten", "-o", "json"], { KUBECONFIG: `${oursFile}:${existing}` });
  assert.equal(theirs.code, 0, theirs.err);
  const mine = kubectl(["config", "view", "--flatten", "-o", "json", "--kubeconfig", merged]);
  assert.equal(mine.code, 0, mine.err);
  assert.deepEqual(JSON.parse(mine.out), JSON.parse(theirs.out));
});

test("names YAML would re-type (on, null, 0755) reach kubectl as the strings they are", (t) => {
  const dir = tempDir(t);
  for (const name of ["on", "null", "0755", "yes", "true", "1e3"]) {
    const r = rewriteKubeconfig(K3S_YAML, { clusterName: name, server: SERVER });
    const file = join(dir, `${name}.yaml`);
    writeFileSync(file, mergeKubeconfig(`apiVersion: v1\nkind: Config\ncurrent-context: ""\n`, r).text);
    const v = view(file);
    assert.deepEqual(v.contexts, [{ name, context: { cluster: name, user: `${name}-admin` } }], name);
    assert.equal(v["current-context"], name);
    assert.deepEqual(v.clusters.map((c) => c.name), [name]);
  }
});

test("an empty list, a null list and a comment-only file take our entries; an unreadable file is refused untouched", async (t) => {
  for (const text of ["", "# nothing yet\n", "apiVersion: v1\nkind: Config\nclusters: []\ncontexts:\nusers: ~\n"]) {
    const m = mergeKubeconfig(text, ours());
    const v = parse(m.text) as View;
    assert.deepEqual([v.clusters.length, v.users.length, v.contexts.length, v["current-context"]], [1, 1, 1, NAME], JSON.stringify(text));
  }
  // two entries of our name make kubectl refuse the whole file; after the merge there is one, ours
  const dir0 = tempDir(t);
  const dup = join(dir0, "dup.yaml");
  writeFileSync(dup, `apiVersion: v1\nkind: Config\nclusters:\n- cluster: {server: "https://192.0.2.9:6443"}\n  name: ${NAME}\n- cluster: {server: "https://192.0.2.8:6443"}\n  name: keep\n- cluster: {server: "https://192.0.2.10:6443"}\n  name: ${NAME}\n`);
  assert.match(kubectl(["config", "view", "--kubeconfig", dup]).err, /duplicate name/);
  writeFileSync(dup, mergeKubeconfig(readFileSync(dup, "utf8"), ours()).text);
  assert.deepEqual(view(dup).clusters.map((c) => [c.name, c.cluster.server]), [[NAME, SERVER], ["keep", "https://192.0.2.8:6443"]]);
  refused(() => mergeKubeconfig("clusters: {a: 1}\n", ours()), "KUBECONFIG_MERGE", /not a list/);
  refused(() => mergeKubeconfig("kind: Pod\n", ours()), "KUBECONFIG_MERGE");
  refused(() => mergeKubeconfig("a: 1\n---\nb: 2\n", ours()), "KUBECONFIG_MERGE");
  const dir = tempDir(t);
  const file = join(dir, "config");
  writeFileSync(file, "clusters: [unclosed\n", { mode: 0o600 });
  await assert.rejects(writeKubeconfigFile(file, (e) => mergeKubeconfig(e, ours(), { file }).text), (e: FmcError) => e.code === "KUBECONFIG_MERGE" && e.message.includes(file));
  assert.equal(readFileSync(file, "utf8"), "clusters: [unclosed\n");
  assert.deepEqual(readdirSync(dir), ["config"], "lock and temp file removed");
});

// ---- which file, and how it is written

test("the target is the file kubectl itself writes: first existing $KUBECONFIG path, else the last, else ~/.kube/config", (t) => {
  const dir = tempDir(t);
  const a = join(dir, "a");
  const b = join(dir, "b");
  const home = join(dir, "home");
  const kubectlWrites = (list: string) => {
    const r = kubectl(["config", "set-cluster", "probe", "--server=https://192.0.2.1:6443"], { KUBECONFIG: list });
    assert.equal(r.code, 0, r.err);
    return [a, b].filter((f) => existsSync(f) && readFileSync(f, "utf8").includes("probe"));
  };
  // none exists: the last (not the first)
  assert.equal(kubeconfigTarget({ env: { KUBECONFIG: `::${a}:${b}` }, home }), b);
  assert.deepEqual(kubectlWrites(`::${a}:${b}`), [b]);
  rmSync(b);
  // the first exists only: that one; the second exists only: that one
  writeFileSync(a, "apiVersion: v1\nkind: Config\n");
  assert.equal(kubeconfigTarget({ env: { KUBECONFIG: `${a}:${b}` }, home }), a);
  assert.deepEqual(kubectlWrites(`${a}:${b}`), [a]);
  rmSync(a);
  writeFileSync(b, "apiVersion: v1\nkind: Config\n");
  assert.equal(kubeconfigTarget({ env: { KUBECONFIG: `${a}:${b}` }, home }), b);
  assert.deepEqual(kubectlWrites(`${a}:${b}`), [b]);
  // one path: that one, existing or not
  assert.equal(kubeconfigTarget({ env: { KUBECONFIG: a }, home }), a);
  assert.equal(kubeconfigTarget({ env: { KUBECONFIG: "" }, home }), join(home, ".kube", "config"));
  assert.equal(kubeconfigTarget({ output: "x/y.yaml", env: { KUBECONFIG: b }, home }), join(process.cwd(), "x/y.yaml"));
});

test("the writer follows a symlink, never widens a mode, and waits for kubectl's lock", async (t) => {
  const dir = tempDir(t);
  const real = join(dir, "dotfiles-kubeconfig");
  const link = join(dir, "config");
  writeFileSync(real, EXISTING, { mode: 0o600 });
  chmodSync(real, 0o400);
  symlinkSync(real, link);
  const w = await writeKubeconfigFile(link, (e) => mergeKubeconfig(e, ours()).text);
  assert.equal(w.path, real);
  assert.ok(lstatSync(link).isSymbolicLink(), "the link stays a link");
  assert.equal(readlinkSync(link), real);
  assert.equal(statSync(real).mode & 0o777, 0o400, "0400 stays 0400");
  assert.equal(view(link).clusters.filter((c) => c.name === NAME).length, 1);

  const locked = join(dir, "locked");
  writeFileSync(locked, EXISTING, { mode: 0o600 });
  writeFileSync(`${locked}.lock`, "");
  await assert.rejects(writeKubeconfigFile(locked, (e) => mergeKubeconfig(e, ours()).text, { lockTries: 2 }), (e: FmcError) => e.code === "KUBECONFIG_LOCKED");
  assert.equal(readFileSync(locked, "utf8"), EXISTING, "nothing written under someone else's lock");
  assert.ok(existsSync(`${locked}.lock`), "someone else's lock is not ours to remove");
  // a lock released while we wait is taken
  setTimeout(() => rmSync(`${locked}.lock`), 150);
  await writeKubeconfigFile(locked, (e) => mergeKubeconfig(e, ours()).text, { lockTries: 10 });
  assert.equal(view(locked).contexts.filter((c) => c.name === NAME).length, 1);
  assert.ok(!existsSync(`${locked}.lock`));
  mkdirSync(join(dir, "d"));
  await assert.rejects(writeKubeconfigFile(join(dir, "d"), () => "x"), (e: FmcError) => e.code === "KUBECONFIG_MERGE");
});

// ---- the command's path, through recorded transports

function recorded(host: string, answer: ExecResult): { link: ServerLink; t: RecordingTransport } {
  const t = new RecordingTransport(host, [(c) => (c.display === `cat ${K3S_ADMIN_KUBECONFIG}` ? answer : undefined)]);
  return { t, link: { host, transport: async () => t } };
}

function io() {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, stdout: (s: string) => void out.push(s), stderr: (s: string) => void err.push(s) };
}

test("fmc kubeconfig --print: the first server that has it, rewritten for the VIP, on stdout", async (t) => {
  const ctx = contextFor();
  const down: ServerLink = { host: "master1", transport: () => Promise.reject(new Error("connect ECONNREFUSED")) };
  const fresh = recorded("master2", { code: KUBECONFIG_ABSENT_EXIT, stdout: "", stderr: `${K3S_ADMIN_KUBECONFIG}: no such file (K3s not installed or not started yet)\n` });
  const up = recorded("master3", { code: 0, stdout: K3S_YAML, stderr: "" });
  const o = io();
  const r = await runKubeconfig(ctx, [down, fresh.link, up.link], { print: true, setCurrent: true, env: {}, home: "/nonexistent", ...o });
  assert.equal(r.host, "master3");
  assert.equal(o.out.join(""), ours().text);
  assert.match(o.err.join(""), /from master3, server https:\/\/10\.17\.5\.10:6443/);
  assert.deepEqual(fresh.t.log.map((c) => c.display), [`cat ${K3S_ADMIN_KUBECONFIG}`]);
  assert.deepEqual(up.t.log.map((c) => c.display), [`cat ${K3S_ADMIN_KUBECONFIG}`]);

  // merged instead: into --output, reported
  const file = join(tempDir(t), "kube", "config");
  const m = io();
  await runKubeconfig(ctx, [up.link], { output: file, setCurrent: true, env: { KUBECONFIG: "/nonexistent/ignored" }, home: "/nonexistent", ...m });
  assert.equal(m.out.join(""), `merged context ${NAME} into ${file}\n`);
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.equal(view(file)["current-context"], NAME);

  await assert.rejects(runKubeconfig(ctx, [up.link], { print: true, output: file, setCurrent: true, env: {}, home: "/", ...io() }), (e: FmcError) => e.code === "USAGE");
});

test("fmc kubeconfig: no server with a kubeconfig is an error naming each server's reason; an insecure one is refused", async () => {
  const ctx = contextFor();
  const down: ServerLink = { host: "master1", transport: () => Promise.reject(new Error("connect ECONNREFUSED")) };
  const fresh = recorded("master2", { code: KUBECONFIG_ABSENT_EXIT, stdout: "", stderr: `${K3S_ADMIN_KUBECONFIG}: no such file (K3s not installed or not started yet)\n` });
  const sudo = recorded("master3", { code: 1, stdout: "", stderr: "sudo: a password is required\n" });
  await assert.rejects(runKubeconfig(ctx, [down, fresh.link, sudo.link], { print: true, setCurrent: true, env: {}, home: "/", ...io() }), (e: FmcError) => {
    assert.equal(e.code, "NO_KUBECONFIG");
    assert.match(e.message, /master1: unreachable: connect ECONNREFUSED/);
    assert.match(e.message, /master2: \/etc\/rancher\/k3s\/k3s\.yaml: no such file/);
    assert.match(e.message, /master3: cat \/etc\/rancher\/k3s\/k3s\.yaml failed \(exit 1\): sudo: a password is required/);
    return true;
  });
  const insecure = recorded("master1", { code: 0, stdout: K3S_YAML.replace("    server:", "    insecure-skip-tls-verify: true\n    server:"), stderr: "" });
  const o = io();
  await assert.rejects(runKubeconfig(ctx, [insecure.link], { print: true, setCurrent: true, env: {}, home: "/", ...o }), (e: FmcError) => e.code === "KUBECONFIG_INSECURE");
  assert.deepEqual(o.out, [], "nothing printed");
});
