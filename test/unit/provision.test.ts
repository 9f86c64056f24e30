// fmc provision against a fake `terraform` (and `tofu`) put first on PATH: a script that
// records its arguments, working directory, the TF_VAR_ secrets in its environment, the
// files beside it and the saved plan file it is given, then answers like a successful run
// (or fails when told to): plan -out writes a plan file, show -json prints the plan JSON
// it is told to ($FAKE_TF_PLAN_JSON, else a plan without changes). What is asserted is
// what fmc ran, where, with which secrets where, what it refused, and what survived.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FMC, fmc, ROOT, tempDir, type RunResult } from "../helpers.js";
import { acquireLock, HOSTS_LOCK } from "../../src/state/lock.js";

interface Call {
  name: string;
  argv: string[];
  cwd: string;
  token: string | null;
  passphrase: string | null;
  files: string[];
  /** The saved plan file named on the command line (-out=F, or show/apply F), as it was when the command started. */
  planFile: { path: string; mode: number; content: string } | null;
}

const PLAN = ".terraform/fmc-libvirt.tfplan";

const TOKEN = "cf-token-0123456789abcdefghijKLMNOP";

/** A directory holding fake binaries of these names, each appending one JSON line per run to $FAKE_TF_LOG. */
function fakeBin(dir: string, names: string[]): string {
  const bin = join(dir, `bin-${names.join("-") || "none"}`);
  mkdirSync(bin, { recursive: true });
  const script = [
    `#!${process.execPath}`,
    'const fs = require("node:fs");',
    'const path = require("node:path");',
    "const argv = process.argv.slice(2);",
    "const out = argv.find((a) => a.startsWith('-out='));",
    "const planPath = out ? out.slice(5) : argv.find((a) => a.endsWith('.tfplan'));",
    "const planFile = planPath && fs.existsSync(planPath) ? { path: planPath, mode: fs.statSync(planPath).mode & 0o777, content: fs.readFileSync(planPath, 'utf8') } : null;",
    "fs.appendFileSync(process.env.FAKE_TF_LOG, JSON.stringify({",
    "  name: path.basename(process.argv[1]), argv, cwd: process.cwd(),",
    "  token: process.env.TF_VAR_cloudflare_api_token ?? null, passphrase: process.env.TF_VAR_fmc_state_passphrase ?? null,",
    "  files: fs.readdirSync('.').sort(), planFile,",
    '}) + "\\n");',
    'if (process.env.FAKE_TF_FAIL === argv.join(" ")) { process.stderr.write("fake failure\\n"); process.exit(Number(process.env.FAKE_TF_EXIT)); }',
    "// like Terraform: plan -out truncates the file (os.Create, its mode kept); show and apply need it",
    "if (out) fs.writeFileSync(planPath, `fake plan of ${process.cwd()} at ${process.hrtime.bigint()}`);",
    "if ((argv[0] === 'show' || argv[0] === 'apply') && planPath && !planFile) { process.stderr.write(`no plan file ${planPath}\\n`); process.exit(1); }",
    "if (argv[0] === 'show') {",
    "  process.stdout.write(process.env.FAKE_TF_PLAN_JSON ? fs.readFileSync(process.env.FAKE_TF_PLAN_JSON, 'utf8') : JSON.stringify({ format_version: '1.2', terraform_version: '1.9.8', resource_changes: [] }));",
    "  process.exit(0);",
    "}",
    'process.stdout.write(`fake ${argv[0]} done\\n`);',
    "",
  ].join("\n");
  for (const n of names) {
    writeFileSync(join(bin, n), script);
    chmodSync(join(bin, n), 0o755);
  }
  return bin;
}

function setup(t: Parameters<typeof tempDir>[0], names = ["terraform"]) {
  const dir = tempDir(t, "fmc-provision-");
  const log = join(dir, "calls.jsonl");
  const bin = fakeBin(dir, names);
  assert.equal(fmc(["init"], dir).status, 0);
  const env = { PATH: bin, FAKE_TF_LOG: log, CLOUDFLARE_API_TOKEN: "" };
  const run = (args: string[], extra: NodeJS.ProcessEnv = {}, input?: string): RunResult => {
    const r = spawnSync(process.execPath, [FMC, ...args], { cwd: dir, encoding: "utf8", input: input ?? "", env: { ...process.env, NO_COLOR: "1", ...env, ...extra } });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const calls = (): Call[] => (existsSync(log) ? readFileSync(log, "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as Call) : []);
  const reset = () => writeFileSync(log, "");
  return { dir, run, calls, reset };
}

test("plan: init and plan in each module's directory, the token only in the cloudflare module's environment", (t) => {
  const s = setup(t);
  const set = s.run(["provision", "secret", "set", "cloudflare-api-token"], {}, `${TOKEN}\n`);
  assert.equal(set.status, 0, set.stderr);
  assert.equal(statSync(join(s.dir, ".fmc/provisioning-secrets.json")).mode & 0o777, 0o600);
  assert.equal(statSync(join(s.dir, ".fmc")).mode & 0o777, 0o700);
  assert.equal(readFileSync(join(s.dir, ".fmc/.gitignore"), "utf8").trim().split("\n").pop(), "*", "a first secret set keeps the state directory out of git");
  // a first render, then Terraform's files in both modules, as a real run leaves them
  assert.equal(fmc(["render", "-o", "out"], s.dir).status, 0);
  const kept: Record<string, string> = {
    "out/terraform/libvirt/terraform.tfstate": '{"version":4,"serial":9}\n',
    "out/terraform/libvirt/.terraform.lock.hcl": "# lock\n",
    "out/terraform/libvirt/terraform.tfvars": 'flatcar_image = "/var/lib/libvirt/images/flatcar.img"\n',
    "out/terraform/cloudflare/terraform.tfstate": '{"version":4,"serial":4}\n',
    "out/terraform/cloudflare/.terraform/providers/marker": "provider\n",
  };
  for (const [rel, content] of Object.entries(kept)) {
    mkdirSync(join(s.dir, rel, ".."), { recursive: true });
    writeFileSync(join(s.dir, rel), content);
  }
  const r = s.run(["provision", "plan"]);
  assert.equal(r.status, 0, r.stderr);
  const calls = s.calls();
  const lib = join(s.dir, "out/terraform/libvirt");
  const cf = join(s.dir, "out/terraform/cloudflare");
  assert.deepEqual(
    calls.map((c) => [c.name, c.argv.join(" "), c.cwd]),
    [
      ["terraform", "init -input=false", lib],
      ["terraform", `plan -input=false -out=${PLAN}`, lib],
      ["terraform", `show -json ${PLAN}`, lib],
      ["terraform", "init -input=false", cf],
      ["terraform", "plan -input=false", cf],
    ],
  );
  assert.deepEqual(calls.map((c) => c.token), [null, null, null, TOKEN, TOKEN], "the token reaches the cloudflare module only, through its environment");
  for (const c of calls) assert.ok(!c.argv.some((a) => a.includes(TOKEN)), `token on the command line of ${c.argv.join(" ")}`);
  assert.ok(!r.stdout.includes(TOKEN) && !r.stderr.includes(TOKEN), "fmc never prints the token");
  // the re-render kept Terraform's files, and Terraform found them beside the rendered ones
  for (const [rel, content] of Object.entries(kept)) assert.equal(readFileSync(join(s.dir, rel), "utf8"), content, `${rel} survived the re-render`);
  assert.ok(calls[1]!.files.includes("terraform.tfstate") && calls[1]!.files.includes("main.tf.json") && calls[1]!.files.includes("cloudinit"));
  assert.ok(calls[4]!.files.includes("terraform.tfstate") && calls[4]!.files.includes("main.tf.json"));
  // Terraform's output streams through (the plan's JSON, secrets and all, does not), fmc's progress goes to stderr
  assert.equal(r.stdout, "fake init done\nfake plan done\nfake init done\nfake plan done\n");
  assert.match(r.stderr, /plan checked: no VM is replaced or destroyed/);
  assert.equal(existsSync(join(lib, PLAN)), false, "the saved plan is removed after use");
  assert.match(r.stderr, /==> terraform plan -input=false {2}\(in out\/terraform\/cloudflare\)/);
});

test("--module, apply --yes, output, and a failing step's exit code passed on", (t) => {
  const s = setup(t);
  const cfOnly = s.run(["provision", "plan", "--module", "cloudflare"], { CLOUDFLARE_API_TOKEN: TOKEN });
  assert.equal(cfOnly.status, 0, cfOnly.stderr);
  assert.deepEqual(s.calls().map((c) => [c.argv.join(" "), c.cwd, c.token]), [
    ["init -input=false", join(s.dir, "out/terraform/cloudflare"), TOKEN],
    ["plan -input=false", join(s.dir, "out/terraform/cloudflare"), TOKEN],
  ]);
  s.reset();
  const apply = s.run(["provision", "apply", "-m", "libvirt", "--yes"]);
  assert.equal(apply.status, 0, apply.stderr);
  assert.deepEqual(s.calls().map((c) => c.argv.join(" ")), ["init -input=false", `plan -input=false -out=${PLAN}`, `show -json ${PLAN}`, `apply -input=false ${PLAN}`], "the plan fmc checked is the one applied");
  s.reset();
  // apply asks before it changes anything: without a terminal and without --yes, nothing runs
  // after a backend change: init copies the state over (no terminal: -force-copy answers its question)
  const migrate = s.run(["provision", "plan", "-m", "libvirt", "--migrate-state"]);
  assert.equal(migrate.status, 0, migrate.stderr);
  assert.deepEqual(s.calls().map((c) => c.argv.join(" ")), ["init -input=false -migrate-state -force-copy", `plan -input=false -out=${PLAN}`, `show -json ${PLAN}`]);
  s.reset();
  const unasked = s.run(["provision", "apply", "-m", "libvirt"]);
  assert.equal(unasked.status, 1);
  assert.match(unasked.stderr, /error\[CONFIRM\] terraform apply asks for a yes and stdin is not a terminal to ask; nothing was run/);
  assert.deepEqual(s.calls(), []);
  const out = s.run(["provision", "output", "-m", "cloudflare"]);
  assert.equal(out.status, 0, out.stderr);
  assert.deepEqual(s.calls().map((c) => [c.argv.join(" "), c.token]), [["init -input=false", null], ["output", null]], "outputs need no token");
  s.reset();
  const failing = s.run(["provision", "plan"], { CLOUDFLARE_API_TOKEN: TOKEN, FAKE_TF_FAIL: `plan -input=false -out=${PLAN}`, FAKE_TF_EXIT: "3" });
  assert.equal(failing.status, 3, "terraform's exit code");
  assert.match(failing.stderr, /terraform plan in out\/terraform\/libvirt exited with 3; nothing after it ran/);
  assert.deepEqual(s.calls().map((c) => c.argv.join(" ")), ["init -input=false", `plan -input=false -out=${PLAN}`], "the cloudflare module did not run");
  assert.equal(existsSync(join(s.dir, "out/terraform/libvirt", PLAN)), false, "the plan file is removed after a failure too");
  const bad = s.run(["provision", "plan", "--module", "dns"]);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /--module dns: no such root module\n\s+hint: use libvirt or cloudflare/);
});

test("no terraform and no tofu: a refusal that says what to install, and nothing rendered or run", (t) => {
  const s = setup(t, []);
  const r = s.run(["provision", "plan"], { CLOUDFLARE_API_TOKEN: TOKEN });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /error\[PROVISION_NO_TOOL\] neither terraform nor tofu is on PATH; nothing was run/);
  assert.match(r.stderr, /https:\/\/apt\.releases\.hashicorp\.com .* main" \| sudo tee \/etc\/apt\/sources\.list\.d\/hashicorp\.list/);
  assert.match(r.stderr, /sudo apt update && sudo apt install terraform/);
  assert.match(r.stderr, /https:\/\/get\.opentofu\.org\/install-opentofu\.sh/);
  assert.match(r.stderr, /--install-method deb/);
  assert.equal(existsSync(join(s.dir, "out")), false, "nothing was rendered");
  // --tofu with only terraform around
  const onlyTerraform = setup(t, ["terraform"]);
  const tofu = onlyTerraform.run(["provision", "plan", "--tofu"], { CLOUDFLARE_API_TOKEN: TOKEN });
  assert.equal(tofu.status, 1);
  assert.match(tofu.stderr, /--tofu: tofu is not on PATH; nothing was run\n\s+hint: install OpenTofu with its installer/);
  assert.deepEqual(onlyTerraform.calls(), []);
  // only tofu around: fmc takes it
  const onlyTofu = setup(t, ["tofu"]);
  const ran = onlyTofu.run(["provision", "plan", "-m", "libvirt"]);
  assert.equal(ran.status, 0, ran.stderr);
  assert.deepEqual(onlyTofu.calls().map((c) => c.name), ["tofu", "tofu", "tofu"]);
});

test("the cloudflare module without a token is refused before anything runs", (t) => {
  const s = setup(t);
  const r = s.run(["provision", "plan"]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /error\[PROVISION_NO_TOKEN\] the cloudflare module needs a Cloudflare API token, and fmc has none; nothing was run/);
  assert.match(r.stderr, /fmc provision secret set cloudflare-api-token < token\.txt/);
  assert.deepEqual(s.calls(), []);
  // a value that is not a token is not stored
  const bad = s.run(["provision", "secret", "set", "cloudflare-api-token"], {}, "two words\n");
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /error\[SECRET_FORMAT\]/);
  assert.equal(existsSync(join(s.dir, ".fmc/provisioning-secrets.json")), false);
  const list = s.run(["provision", "secret", "list"]);
  assert.match(list.stdout, /cloudflare-api-token\s+not stored/);
});

test("encrypted state: tofu only, the passphrase generated once and passed through the environment", (t) => {
  const s = setup(t, ["terraform", "tofu"]);
  const spec = join(s.dir, "cluster.yaml");
  writeFileSync(spec, readFileSync(spec, "utf8").replace("  flatcarChannel: stable\n", "  flatcarChannel: stable\n  stateEncryption: { fromUnencrypted: true }\n"));
  const r = s.run(["provision", "plan", "-m", "libvirt"]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /generated the state encryption passphrase into .*provisioning-secrets\.json; keep a copy elsewhere/);
  const shown = s.run(["provision", "secret", "show", "state-passphrase"]);
  assert.equal(shown.status, 0, shown.stderr);
  const passphrase = shown.stdout.trim();
  assert.match(passphrase, /^[A-Za-z0-9_-]{43}$/);
  const calls = s.calls();
  assert.deepEqual(calls.map((c) => [c.name, c.argv.join(" ")]), [["tofu", "init -input=false"], ["tofu", `plan -input=false -out=${PLAN}`], ["tofu", `show -json ${PLAN}`]], "tofu although terraform is first in line");
  for (const c of calls) {
    assert.equal(c.passphrase, passphrase);
    assert.ok(!c.argv.some((a) => a.includes(passphrase)));
  }
  assert.ok(!r.stdout.includes(passphrase) && !r.stderr.includes(passphrase));
  const main = JSON.parse(readFileSync(join(s.dir, "out/terraform/libvirt/main.tf.json"), "utf8"));
  assert.equal(main.terraform.encryption.key_provider.pbkdf2.fmc.passphrase, "${var.fmc_state_passphrase}");
  assert.deepEqual(main.terraform.encryption.state.fallback, { method: "method.unencrypted.migrate" });
  // the same passphrase on the next run
  s.reset();
  assert.equal(s.run(["provision", "plan", "-m", "libvirt"]).status, 0);
  assert.deepEqual(s.calls().map((c) => c.passphrase), [passphrase, passphrase, passphrase]);
  // terraform can't read an encrypted state: without tofu, refused
  const noTofu = setup(t, ["terraform"]);
  writeFileSync(join(noTofu.dir, "cluster.yaml"), readFileSync(spec, "utf8"));
  const refused = noTofu.run(["provision", "plan", "-m", "libvirt"]);
  assert.equal(refused.status, 1);
  assert.match(refused.stderr, /the spec encrypts the Terraform state \(provisioning\.stateEncryption\), which only OpenTofu does, and tofu is not on PATH/);
  assert.deepEqual(noTofu.calls(), []);
});

test("a state from the single-module layout stops provision with the commands that divide it", (t) => {
  const s = setup(t);
  assert.equal(fmc(["render", "-o", "out"], s.dir).status, 0);
  writeFileSync(join(s.dir, "out/terraform/terraform.tfstate"), '{"version":4}\n');
  const r = s.run(["provision", "plan"], { CLOUDFLARE_API_TOKEN: TOKEN });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /error\[PROVISION_OLD_STATE\] out\/terraform\/terraform\.tfstate is the state of the single root module/);
  assert.match(r.stderr, /mv out\/terraform\/terraform\.tfstate out\/terraform\/libvirt\/terraform\.tfstate\n\s+terraform -chdir=out\/terraform\/libvirt init\n/);
  assert.match(r.stderr, /terraform -chdir=out\/terraform\/libvirt state mv -state-out=\.\.\/cloudflare\/terraform\.tfstate cloudflare_dns_record\.apex cloudflare_dns_record\.apex/);
  assert.match(r.stderr, /cloudflare_zone_dnssec\.zone cloudflare_zone_dnssec\.zone/);
  assert.deepEqual(s.calls(), []);
  assert.equal(readFileSync(join(s.dir, "out/terraform/terraform.tfstate"), "utf8"), '{"version":4}\n');
  // half done (a module state beside the old one): no mv that would overwrite it
  writeFileSync(join(s.dir, "out/terraform/libvirt/terraform.tfstate"), '{"version":4,"serial":1}\n');
  const both = s.run(["provision", "plan"], { CLOUDFLARE_API_TOKEN: TOKEN });
  assert.equal(both.status, 1);
  assert.match(both.stderr, /is left from the single root module earlier renders wrote, and out\/terraform\/libvirt\/terraform\.tfstate exists too; nothing was run/);
  assert.doesNotMatch(both.stderr, /\bmv out\//);
  assert.deepEqual(s.calls(), []);
});

test("--no-render runs on the files already there, and refuses a directory without them", (t) => {
  const s = setup(t);
  const missing = s.run(["provision", "plan", "-m", "libvirt", "--no-render", "-o", "elsewhere"]);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /error\[PROVISION_NOT_RENDERED\] elsewhere\/terraform\/libvirt\/main\.tf\.json does not exist; nothing was run/);
  assert.equal(fmc(["render", "-o", "out"], s.dir).status, 0);
  const main = join(s.dir, "out/terraform/libvirt/main.tf.json");
  writeFileSync(main, readFileSync(main, "utf8").replace('"vcpu": 2', '"vcpu": 2 '));
  const edited = readFileSync(main, "utf8");
  const r = s.run(["provision", "plan", "-m", "libvirt", "--no-render"]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(readFileSync(main, "utf8"), edited, "nothing was rendered over it");
  assert.equal(s.calls().length, 3);
});

interface PlanJson {
  resource_changes: Array<{ type: string; name: string; change: { actions: string[] } }>;
}

test("a libvirt plan that replaces or destroys VMs: refused unless each host is named, never two K3s servers; apply applies the checked plan", (t) => {
  const s = setup(t);
  const lib = join(s.dir, "out/terraform/libvirt");
  // master1 and master2 replaced (their memory is ForceNew), worker1 updated in place, the Ignition configs no-op
  const fixture = JSON.parse(readFileSync(join(ROOT, "test/fixtures/terraform-plan/libvirt-replace-masters.json"), "utf8")) as PlanJson;
  const replaced = fixture.resource_changes.filter((c) => c.type === "libvirt_domain" && c.change.actions.includes("delete")).map((c) => c.name);
  assert.deepEqual(replaced, ["master1", "master2"], "the fixture replaces two K3s servers");
  let n = 0;
  const planJson = (keep: (c: PlanJson["resource_changes"][number]) => boolean) => {
    const file = join(s.dir, `plan-${n++}.json`);
    writeFileSync(file, JSON.stringify({ ...fixture, resource_changes: fixture.resource_changes.filter(keep) }));
    return file;
  };
  const both = join(ROOT, "test/fixtures/terraform-plan/libvirt-replace-masters.json");
  const argvs = () => s.calls().map((c) => c.argv.join(" "));
  const checkedOnly = ["init -input=false", `plan -input=false -out=${PLAN}`, `show -json ${PLAN}`];

  // nobody named: refused after the plan, before any apply, with the hosts and the option that allows them
  const none = s.run(["provision", "apply", "-m", "libvirt", "--yes"], { FAKE_TF_PLAN_JSON: both });
  assert.equal(none.status, 1, none.stderr);
  assert.match(none.stderr, /error\[PROVISION_REPLACE_REFUSED\] the libvirt plan powers off and destroys 2 VMs you did not name: master1 \(replaced, K3s server\), master2 \(replaced, K3s server\); nothing was applied/);
  assert.match(none.stderr, /hint: .*--allow-replace master1 --allow-replace master2 \(one K3s server per run\)/);
  assert.deepEqual(argvs(), checkedOnly);
  assert.equal(s.calls()[1]!.planFile?.mode, 0o600, "the plan file (state and variables inside) is private before Terraform writes it");
  assert.equal(existsSync(join(lib, PLAN)), false, "the refused plan is removed");
  // plan refuses the same, so the operator learns it before an apply
  s.reset();
  const planned = s.run(["provision", "plan", "-m", "libvirt"], { FAKE_TF_PLAN_JSON: both });
  assert.equal(planned.status, 1);
  assert.match(planned.stderr, /error\[PROVISION_REPLACE_REFUSED\]/);
  assert.deepEqual(argvs(), checkedOnly);

  // one of them named: still refused, for the other
  s.reset();
  const one = s.run(["provision", "apply", "-m", "libvirt", "--yes", "--allow-replace", "master1"], { FAKE_TF_PLAN_JSON: both });
  assert.equal(one.status, 1);
  assert.match(one.stderr, /error\[PROVISION_REPLACE_REFUSED\] the libvirt plan powers off and destroys a VM you did not name: master2 \(replaced, K3s server\); nothing was applied/);
  assert.match(one.stderr, /hint: .*--allow-replace master2$/m);
  assert.deepEqual(argvs(), checkedOnly);

  // both named: two K3s servers at once would take etcd's quorum, refused even so
  s.reset();
  const two = s.run(["provision", "apply", "-m", "libvirt", "--yes", "--allow-replace", "master1", "--allow-replace=master2"], { FAKE_TF_PLAN_JSON: both });
  assert.equal(two.status, 1);
  assert.match(two.stderr, /error\[PROVISION_REPLACE_SERVERS\] the libvirt plan destroys 2 K3s servers at once \(master1, master2\); etcd would lose its quorum\. Nothing was applied/);
  assert.deepEqual(argvs(), checkedOnly);

  // a plan that replaces one server, named: applied, and apply gets the very plan file that was checked
  s.reset();
  const onlyMaster1 = planJson((c) => c.name !== "master2");
  const ok = s.run(["provision", "apply", "-m", "libvirt", "--yes", "--allow-replace", "master1"], { FAKE_TF_PLAN_JSON: onlyMaster1 });
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stderr, /plan checked: master1 replaced, as --allow-replace allows/);
  const calls = s.calls();
  assert.deepEqual(calls.map((c) => c.argv.join(" ")), [...checkedOnly, `apply -input=false ${PLAN}`]);
  const written = calls[2]!.planFile!; // what show read is what plan wrote
  assert.match(written.content, /^fake plan of /);
  assert.deepEqual(calls[3]!.planFile, written, "apply got the plan file show -json read, unchanged and 0600");
  assert.equal(written.mode, 0o600);
  assert.equal(existsSync(join(lib, PLAN)), false, "removed after apply");
  // without that name, the same plan is refused
  s.reset();
  assert.match(s.run(["provision", "apply", "-m", "libvirt", "--yes"], { FAKE_TF_PLAN_JSON: onlyMaster1 }).stderr, /PROVISION_REPLACE_REFUSED\] .*you did not name: master1 \(replaced, K3s server\)/);

  // a plan that destroys no VM (updates, no-ops): applied without naming anyone
  s.reset();
  const calm = s.run(["provision", "apply", "-m", "libvirt", "--yes"], { FAKE_TF_PLAN_JSON: planJson((c) => !c.change.actions.includes("delete")) });
  assert.equal(calm.status, 0, calm.stderr);
  assert.match(calm.stderr, /plan checked: no VM is replaced or destroyed/);
  assert.deepEqual(argvs(), [...checkedOnly, `apply -input=false ${PLAN}`]);

  // a worker (not a server) destroyed, named: applied; a name that is no VM at all: a usage error, nothing applied
  s.reset();
  const worker = planJson((c) => c.name === "master1");
  const workerPlan = JSON.parse(readFileSync(worker, "utf8")) as PlanJson;
  for (const c of workerPlan.resource_changes) c.name = "worker1";
  writeFileSync(worker, JSON.stringify(workerPlan).replaceAll("libvirt_domain.master1", "libvirt_domain.worker1"));
  assert.equal(s.run(["provision", "apply", "-m", "libvirt", "--yes", "--allow-replace", "worker1"], { FAKE_TF_PLAN_JSON: worker }).status, 0);
  s.reset();
  const typo = s.run(["provision", "apply", "-m", "libvirt", "--yes", "--allow-replace", "mastr1"], { FAKE_TF_PLAN_JSON: onlyMaster1 });
  assert.equal(typo.status, 1);
  assert.match(typo.stderr, /error\[USAGE\] --allow-replace mastr1: no VM of that name in the spec or the plan; nothing was applied/);
  assert.ok(!argvs().some((a) => a.startsWith("apply")));

  // a plan fmc can't read is not passed
  s.reset();
  const garbled = join(s.dir, "garbled.json");
  writeFileSync(garbled, JSON.stringify({ format_version: "2.0", resource_changes: [] }));
  const unread = s.run(["provision", "apply", "-m", "libvirt", "--yes"], { FAKE_TF_PLAN_JSON: garbled });
  assert.equal(unread.status, 1);
  assert.match(unread.stderr, /error\[PROVISION_PLAN_JSON\] the libvirt plan could not be read \(format_version "2\.0"/);
  assert.ok(!argvs().some((a) => a.startsWith("apply")));

  // the plan file, had it stayed, is one git ignores (out/.gitignore)
  if (spawnSync("git", ["--version"]).status === 0) {
    assert.equal(spawnSync("git", ["init", "-q"], { cwd: s.dir }).status, 0);
    const ignored = spawnSync("git", ["check-ignore", "-q", join("out/terraform/libvirt", PLAN)], { cwd: s.dir });
    assert.equal(ignored.status, 0, "out/terraform/libvirt/.terraform/fmc-libvirt.tfplan is git-ignored");
  }
});

test("every provision command explains itself in --help", (t) => {
  const dir = tempDir(t);
  for (const [args, pattern] of [
    [["provision", "--help"], /libvirt VMs and the Cloudflare DNS, each in its own directory/],
    [["provision", "plan", "--help"], /--module.*libvirt or cloudflare[\s\S]*--tofu[\s\S]*--no-render|--render/],
    [["provision", "apply", "--help"], /--yes[\s\S]*-auto-approve/],
    [["provision", "apply", "--help"], /--allow-replace[\s\S]*repeatable; at most one K3s server per run/],
    [["provision", "plan", "--help"], /--allow-replace/],
    [["provision", "secret", "set", "--help"], /stdin/],
  ] as const) {
    const r = fmc([...args], dir);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout + r.stderr, pattern, args.join(" "));
  }
});

test("provision apply waits for no other command that changes hosts: refused while the hosts lock is held, naming its holder; plan is not", (t) => {
  const s = setup(t);
  const lock = acquireLock(join(s.dir, ".fmc"), HOSTS_LOCK, 0, { what: "upgrade", command: "fmc upgrade --to v1.33.5+k3s1 --yes" });
  try {
    const apply = s.run(["provision", "apply", "-m", "libvirt", "--yes"]);
    assert.equal(apply.status, 1, apply.stderr);
    assert.match(apply.stderr, /error\[LOCKED\] another fmc upgrade is running \(pid \d+.*fmc upgrade --to v1\.33\.5\+k3s1 --yes/);
    assert.deepEqual(s.calls().map((c) => c.argv[0]), [], "terraform never ran");
    const plan = s.run(["provision", "plan", "-m", "libvirt"]);
    assert.equal(plan.status, 0, plan.stderr);
  } finally {
    lock.release();
  }
  s.reset();
  const after = s.run(["provision", "apply", "-m", "libvirt", "--yes"]);
  assert.equal(after.status, 0, after.stderr);
  assert.equal(existsSync(join(s.dir, ".fmc", `${HOSTS_LOCK}.lock`)), false, "released after the run");
});
