// fmc provision plan|apply|output: render the spec (or take the rendered directory), then
// run terraform (or tofu) init and the verb in each root module's working directory,
// out/terraform/libvirt/ then out/terraform/cloudflare/, streaming its output, stopping at
// the first failure and passing its exit code on. Secrets reach Terraform only through
// its environment (TF_VAR_…). fmc provision secret set|show|list keeps those secrets.
// The libvirt module's plan is saved and checked before apply applies exactly that plan:
// one that replaces or destroys a VM the operator did not name (--allow-replace HOST), or
// more than one K3s server, is refused.
import { spawn } from "node:child_process";
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, rmSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { defineCommand } from "citty";
import { FmcError } from "../errors.js";
import { context, findSpec } from "../project.js";
import { readStdin } from "../files.js";
import { renderAll } from "../render/index.js";
import { checkOutDir, writeArtifacts } from "../render/write.js";
import { CLOUDFLARE_TOKEN_VAR, cloudflareTerraform, moduleDir, renderedModules, STATE_PASSPHRASE_VAR, TERRAFORM_MODULES, type TerraformModule } from "../render/terraform.js";
import { acquireLock, HOSTS_LOCK } from "../state/lock.js";
import { checkDomainLosses, chooseTool, domainLosses, PLAN_FILE, provisionSteps, type ProvisionVerb, type Tool } from "../local/provision.js";
import { PROVISION_SECRET_NAMES, PROVISION_SECRETS, provisionSecretsFile, readProvisionSecrets, setProvisionSecret, statePassphrase, checkProvisionSecretName } from "../state/provision-secrets.js";
import { stateDirFor } from "../state/secrets.js";
import type { ClusterContext } from "../state/context.js";
import { bold, confirm, dim, fileArg, printProblems, red, specArg, specFileOf, stateArg } from "./ui.js";

const common = {
  spec: specArg,
  file: fileArg,
  state: stateArg,
  out: { type: "string", alias: "o", description: "the rendered directory; each module runs in <out>/terraform/<module>/, where its state stays", default: "out" },
  module: { type: "string", alias: "m", description: `only this root module: ${TERRAFORM_MODULES.join(" or ")} (default: every module the spec renders, in that order)` },
  tofu: { type: "boolean", description: "run OpenTofu's tofu instead of terraform (always so when the spec encrypts the state)", default: false },
  render: { type: "boolean", description: "render the spec into --out first (--no-render: use the files already there)", default: true },
  "migrate-state": {
    type: "boolean",
    description: "after a change of provisioning.backend: let init copy each module's state to the new backend (terraform init -migrate-state: it asks in a terminal; without one, -force-copy answers yes)",
    default: false,
  },
} as const;

type CommonArgs = { spec?: string; file?: string; state?: string; out: string; module?: string; tofu: boolean; render: boolean; "migrate-state"?: boolean };

const allowReplaceArg = {
  "allow-replace": {
    type: "string",
    valueHint: "HOST",
    description: "let the libvirt plan replace or destroy this host's VM (repeatable; at most one K3s server per run). Without it, a plan that would is refused before anything is applied",
  },
} as const;

/** --allow-replace HOST, repeatable (citty keeps only the last value of a repeated option), or comma-separated. */
function allowedReplacements(rawArgs: readonly string[]): string[] {
  const values: string[] = [];
  for (let i = 0; i < rawArgs.length && rawArgs[i] !== "--"; i++) {
    const a = rawArgs[i]!;
    if (a.startsWith("--allow-replace=")) values.push(a.slice("--allow-replace=".length));
    else if (a === "--allow-replace") {
      const v = rawArgs[++i];
      if (v === undefined || v.startsWith("-")) throw new FmcError("USAGE", "--allow-replace needs a host name", "--allow-replace master1");
      values.push(v);
    }
  }
  return [...new Set(values.flatMap((v) => v.split(",")).map((v) => v.trim()).filter(Boolean))];
}

function parseModule(m: string | undefined): TerraformModule | undefined {
  if (m === undefined) return undefined;
  if ((TERRAFORM_MODULES as readonly string[]).includes(m)) return m as TerraformModule;
  throw new FmcError("USAGE", `--module ${m}: no such root module`, `use ${TERRAFORM_MODULES.join(" or ")}`);
}

/**
 * Before the split into modules, one root module in <out>/terraform/ held every
 * resource. Its state must be divided before the new modules run, or they would plan
 * to create everything again: say how, with the addresses that move.
 */
function refuseSingleModuleState(ctx: ClusterContext, out: string): void {
  const old = join(out, "terraform", "terraform.tfstate");
  if (!existsSync(old)) return;
  const cf = cloudflareTerraform(ctx);
  const addresses = Object.entries((cf?.resource ?? {}) as Record<string, Record<string, unknown>>).flatMap(([type, byName]) => Object.keys(byName).map((n) => `${type}.${n}`));
  const lib = join(out, moduleDir("libvirt"));
  if (existsSync(join(lib, "terraform.tfstate"))) {
    throw new FmcError(
      "PROVISION_OLD_STATE",
      `${old} is left from the single root module earlier renders wrote, and ${join(lib, "terraform.tfstate")} exists too; nothing was run`,
      `make sure every resource of the old state is in a module's state (terraform state list, in ${out}/terraform and in each module's directory), then move the old state out of ${join(out, "terraform")}`,
    );
  }
  const steps = [
    `mv ${old} ${join(lib, "terraform.tfstate")}`,
    `terraform -chdir=${lib} init`,
    ...addresses.map((a) => `terraform -chdir=${lib} state mv -state-out=../cloudflare/terraform.tfstate ${a} ${a}`),
    `keep ${join(out, "terraform", "terraform.tfstate.backup")} somewhere safe, away from ${join(out, "terraform")}`,
  ];
  throw new FmcError(
    "PROVISION_OLD_STATE",
    `${old} is the state of the single root module earlier renders wrote; the VMs and the DNS records now have a module each, and running them before the state is divided would plan to create every resource again. Nothing was run`,
    `divide it (with the terraform or tofu you use):\n      ${steps.join("\n      ")}`,
  );
}

/**
 * Terraform's environment per module: the caller's, plus the secrets as TF_VAR_… (a value
 * already exported wins); the Cloudflare token only where the cloudflare module runs.
 */
function terraformEnv(ctx: ClusterContext, stateDir: string, modules: readonly TerraformModule[], verb: ProvisionVerb): Map<TerraformModule, NodeJS.ProcessEnv> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  const tokenVar = `TF_VAR_${CLOUDFLARE_TOKEN_VAR}`;
  let token = env[tokenVar];
  if (verb !== "output" && modules.includes("cloudflare") && !token) {
    token = readProvisionSecrets(stateDir)["cloudflare-api-token"] ?? (env.CLOUDFLARE_API_TOKEN || undefined);
    if (!token) {
      throw new FmcError(
        "PROVISION_NO_TOKEN",
        "the cloudflare module needs a Cloudflare API token, and fmc has none; nothing was run",
        "store it once, from a file or your password manager: fmc provision secret set cloudflare-api-token < token.txt (CLOUDFLARE_API_TOKEN in the environment also works)",
      );
    }
  }
  const passVar = `TF_VAR_${STATE_PASSPHRASE_VAR}`;
  if (ctx.spec.provisioning.stateEncryption && !env[passVar]) {
    const p = statePassphrase(stateDir);
    if (p.generated) process.stderr.write(`generated the state encryption passphrase into ${provisionSecretsFile(stateDir)}; keep a copy elsewhere (fmc provision secret show state-passphrase): without it the state can't be read\n`);
    env[passVar] = p.value;
  }
  const byModule = new Map<TerraformModule, NodeJS.ProcessEnv>();
  for (const m of modules) {
    const own = { ...env };
    if (m === "cloudflare" && token) own[tokenVar] = token;
    byModule.set(m, own);
  }
  return byModule;
}

/**
 * Runs one command with the terminal, to its end; an interrupt reaches Terraform (same
 * process group), which stops cleanly first. With capture, its stdout is collected
 * instead of shown (show -json: the plan in JSON, secrets and all).
 */
function run(tool: Tool, args: readonly string[], cwd: string, env: NodeJS.ProcessEnv, capture = false): Promise<{ code: number; stdout: string }> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(tool.path, args, { cwd, env, stdio: ["inherit", capture ? "pipe" : "inherit", "inherit"] });
    const chunks: Buffer[] = [];
    child.stdout?.on("data", (c: Buffer) => chunks.push(c));
    const onInt = () => {}; // Terraform got the same SIGINT and finishes its step: wait for it
    const onTerm = () => child.kill("SIGTERM");
    process.on("SIGINT", onInt);
    process.on("SIGTERM", onTerm);
    const off = () => {
      process.off("SIGINT", onInt);
      process.off("SIGTERM", onTerm);
    };
    child.on("error", (e) => {
      off();
      reject(new FmcError("PROVISION_RUN", `could not run ${tool.path}: ${e.message}`));
    });
    child.on("close", (code, signal) => {
      off();
      resolveRun({ code: code ?? (signal === "SIGINT" ? 130 : signal === "SIGTERM" ? 143 : 1), stdout: Buffer.concat(chunks).toString("utf8") });
    });
  });
}

/** An empty plan file, 0600 (Terraform truncates it and keeps its mode), for Terraform to write the plan into. */
function privatePlanFile(file: string): void {
  mkdirSync(join(file, ".."), { recursive: true, mode: 0o700 });
  closeSync(openSync(file, "w", 0o600));
  chmodSync(file, 0o600); // one left from a killed run keeps the mode it had
}

async function provision(verb: ProvisionVerb, args: CommonArgs & { yes?: boolean }, rawArgs: readonly string[] = []): Promise<void> {
  const only = parseModule(args.module);
  const allowed = allowedReplacements(rawArgs);
  checkOutDir(args.out);
  if (verb === "apply" && !args.yes && !process.stdin.isTTY) {
    throw new FmcError("CONFIRM", "terraform apply asks for a yes and stdin is not a terminal to ask; nothing was run", "run it in a terminal, or use --yes (terraform apply -auto-approve)");
  }
  const { ctx, loaded, stateDir } = context({ file: specFileOf(args), stateDir: args.state });
  printProblems(loaded.problems);
  const rendered = renderedModules(ctx);
  if (only && !rendered.includes(only)) {
    throw new FmcError("PROVISION_NO_MODULE", `the spec renders no ${only} module`, "the cloudflare module needs a cloudflare section and a gateway host with a publicAddress");
  }
  const modules = only ? [only] : rendered;
  const tool = chooseTool(ctx.spec, args.tofu, process.env.PATH);
  refuseSingleModuleState(ctx, args.out);
  const env = terraformEnv(ctx, stateDir, modules, verb);
  if (args.render) {
    const r = writeArtifacts(args.out, renderAll(ctx));
    process.stderr.write(dim(`rendered into ${args.out}/: ${r.written} written, ${r.unchanged} unchanged${r.removed.length ? `, ${r.removed.length} removed` : ""}\n`));
  } else {
    for (const m of modules) {
      const main = join(args.out, moduleDir(m), "main.tf.json");
      if (!existsSync(main)) throw new FmcError("PROVISION_NOT_RENDERED", `${main} does not exist; nothing was run`, `render first (fmc render -o ${args.out}), or leave out --no-render`);
    }
  }
  const steps = provisionSteps(verb, modules, { noInput: !process.stdin.isTTY, autoApprove: !!args.yes, migrateState: !!args["migrate-state"] });
  const planFiles = new Set<string>();
  // an apply replaces VMs: not while another fmc changes the hosts (provision reaches no host
  // over SSH, so the state directory's lock is the one it takes; a new VM starts unlocked)
  const lock = verb === "apply" ? acquireLock(stateDir, HOSTS_LOCK, 0, { what: "provision apply" }) : undefined;
  try {
    for (const step of steps) {
      const cwd = resolve(args.out, step.dir);
      const shown = relative(process.cwd(), cwd) || ".";
      if (step.args.includes(`-out=${PLAN_FILE}`)) {
        planFiles.add(join(cwd, PLAN_FILE));
        privatePlanFile(join(cwd, PLAN_FILE));
      }
      if (step.asks && !(await confirm(`Apply the libvirt plan above? [y/N] `, "applying the plan needs a yes"))) {
        process.stderr.write(red("not applied\n"));
        process.exitCode = 1;
        return;
      }
      process.stderr.write(bold(`==> ${tool.name} ${step.args.join(" ")}`) + dim(`  (in ${shown})\n`));
      const { code, stdout } = await run(tool, step.args, cwd, env.get(step.module)!, step.checksPlan);
      if (code !== 0) {
        process.stderr.write(red(`${tool.name} ${step.args[0]} in ${shown} exited with ${code}; nothing after it ran\n`));
        process.exitCode = code;
        return;
      }
      if (step.checksPlan) {
        const losses = domainLosses(stdout);
        checkDomainLosses(losses, ctx.spec, allowed);
        process.stderr.write(dim(losses.length ? `plan checked: ${losses.map((l) => `${l.host} ${l.replaced ? "replaced" : "destroyed"}`).join(", ")}, as --allow-replace allows\n` : "plan checked: no VM is replaced or destroyed\n"));
      }
    }
  } finally {
    // the saved plan holds the state and the variables: never left behind
    for (const f of planFiles) rmSync(f, { force: true });
    lock?.release();
  }
  process.stderr.write(dim(`${tool.name} ${verb}: done in ${modules.map((m) => join(args.out, moduleDir(m))).join(", ")}\n`));
}

const plan = defineCommand({
  meta: {
    name: "plan",
    description:
      "Render, then terraform init and plan in each root module's directory (out/terraform/libvirt, out/terraform/cloudflare): what Terraform would change; nothing is changed. A libvirt plan that replaces or destroys a VM not named with --allow-replace, or more than one K3s server, is refused",
  },
  args: { ...common, ...allowReplaceArg },
  run: ({ args, rawArgs }) => provision("plan", args, rawArgs),
});

const apply = defineCommand({
  meta: {
    name: "apply",
    description:
      "Render, then terraform init and apply in each root module's directory, stopping at the first failure; the plan is shown and you are asked before anything changes (unless --yes). The libvirt module applies the plan fmc checked: replacing or destroying a VM needs --allow-replace HOST, and never more than one K3s server per run",
  },
  args: { ...common, ...allowReplaceArg, yes: { type: "boolean", alias: "y", description: "approve without asking (the libvirt module's checked plan is applied as is; -auto-approve elsewhere); needed without a terminal", default: false } },
  run: ({ args, rawArgs }) => provision("apply", args, rawArgs),
});

const output = defineCommand({
  meta: { name: "output", description: "Print each module's Terraform outputs (the cloudflare module's dnssec_ds is the DS record for the registrar)" },
  args: common,
  run: ({ args }) => provision("output", args),
});

/** The most a piped secret may be: the longest one fmc keeps is 1,024 characters. */
const MAX_SECRET_INPUT_BYTES = 64 * 1024;

/** A secret from stdin: piped as is (one trailing newline dropped), or typed at a prompt without echo. */
async function readSecretInput(prompt: string): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) return (await readStdin(prompt.replace(/: $/, ""), MAX_SECRET_INPUT_BYTES)).replace(/\r?\n$/, "");
  process.stderr.write(prompt);
  stdin.setRawMode(true);
  stdin.setEncoding("utf8");
  stdin.resume();
  return new Promise((resolveRead, reject) => {
    let value = "";
    const finish = (err?: FmcError) => {
      stdin.off("data", onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write("\n");
      if (err) reject(err);
      else resolveRead(value);
    };
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === "\r" || ch === "\n") return finish();
        if (ch === "\u0003" || ch === "\u0004") return finish(new FmcError("INTERRUPTED", "nothing was stored"));
        if (ch === "\u007f" || ch === "\b") value = value.slice(0, -1);
        else value += ch;
      }
    };
    stdin.on("data", onData);
  });
}

const secretArgs = { file: fileArg, state: stateArg } as const;
const stateDirOf = (args: { file?: string; state?: string }) => stateDirFor(findSpec(args.file).file, args.state).path;
const nameArg = { type: "positional", required: true, valueHint: "NAME", description: `${PROVISION_SECRET_NAMES.join(" or ")}` } as const;

const secretSet = defineCommand({
  meta: { name: "set", description: "Store a provisioning secret read from stdin (piped, or typed without echo); never an argument, so it stays out of shell history and ps" },
  args: { name: nameArg, ...secretArgs },
  async run({ args }) {
    checkProvisionSecretName(args.name); // before asking for a value
    const value = await readSecretInput(`${args.name}: `);
    setProvisionSecret(stateDirOf(args), args.name, value);
    process.stdout.write(`stored ${args.name} in ${provisionSecretsFile(stateDirOf(args))} (0600)\n`);
  },
});

const secretShow = defineCommand({
  meta: { name: "show", description: "Print one provisioning secret on stdout, on purpose (to back up the state passphrase)" },
  args: { name: nameArg, ...secretArgs },
  run({ args }) {
    checkProvisionSecretName(args.name);
    const value = readProvisionSecrets(stateDirOf(args))[args.name];
    if (!value) throw new FmcError("SECRET_UNSET", `${args.name} is not stored`, args.name === "state-passphrase" ? "fmc provision generates it on first use with provisioning.stateEncryption" : `store it: fmc provision secret set ${args.name} < file`);
    if (process.stdout.isTTY) process.stderr.write(dim(`secret ${args.name}, shown on purpose; it stays in your terminal's scrollback\n`));
    process.stdout.write(`${value}\n`);
  },
});

const secretList = defineCommand({
  meta: { name: "list", description: "List the provisioning secrets, whether each is stored, and what it is for (never values)" },
  args: secretArgs,
  run({ args }) {
    const stored = readProvisionSecrets(stateDirOf(args));
    for (const name of PROVISION_SECRET_NAMES) {
      process.stdout.write(`${bold(name.padEnd(22))} ${stored[name] ? "stored" : "not stored"}  ${dim(PROVISION_SECRETS[name].purpose)}\n`);
    }
  },
});

const secret = defineCommand({
  meta: { name: "secret", description: "The secrets fmc provision passes to Terraform as TF_VAR_… (the Cloudflare API token, the state passphrase)" },
  subCommands: { set: secretSet, show: secretShow, list: secretList },
});

export const provisionCommand = defineCommand({
  meta: {
    name: "provision",
    description: "Run Terraform (or OpenTofu) on the rendered root modules: the libvirt VMs and the Cloudflare DNS, each in its own directory with its own state",
  },
  subCommands: { plan, apply, output, secret },
});
