// fmc lab up | status | down | exec | ssh | reboot: the local lab of real Linux hosts on this machine.
import { existsSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { defineCommand } from "citty";
import { context, DEFAULT_SPEC_FILE, findSpec } from "../project.js";
import { renderAll } from "../render/index.js";
import { stateDirFor } from "../state/secrets.js";
import { FmcError } from "../errors.js";
import { spawn } from "node:child_process";
import { constants as osConstants } from "node:os";
import { DEFAULT_VM_ROLES, labDown, labExecCommand, labReboot, labSshTarget, labStatus, labUp, requireRoot, type LabSshTarget } from "../lab/lab.js";
import { ROLES } from "../model/schema.js";
import { bold, dim, fileArg, n, red, specArg, specFileOf, stateArg } from "./ui.js";

const log = (line: string) => process.stderr.write(dim(`lab: ${line}\n`));

/**
 * This checkout's state directory, without loading the spec or its secrets: teardown
 * must work with a spec that is invalid, unreadable or gone.
 */
function labStateDir(args: { file?: string; state?: string }): string {
  let specFile: string | undefined;
  try {
    specFile = findSpec(args.file).file;
  } catch (e) {
    if (!(e instanceof FmcError) || args.file === "") throw e;
    specFile = resolve(args.file ?? DEFAULT_SPEC_FILE);
  }
  return stateDirFor(specFile, args.state).path;
}

function vmRolesOf(arg: string | undefined): string[] | undefined {
  if (arg === undefined) return undefined;
  if (arg === "none") return [];
  const roles = arg.split(",").filter(Boolean);
  const bad = roles.find((r) => !(ROLES as readonly string[]).includes(r));
  if (bad) throw new FmcError("USAGE", `--vm ${arg}: ${bad} is not a role`, `roles: ${ROLES.join(", ")}, or none`);
  return roles;
}

const up = defineCommand({
  meta: { name: "up", description: "Start one lab host per spec host (root required); writes an inventory overlay for plan/apply" },
  args: {
    spec: specArg,
    file: fileArg,
    state: stateArg,
    only: { type: "string", description: "only hosts with these roles, comma-separated (e.g. loadbalancer,k3s-agent)" },
    vm: { type: "string", description: `hosts with these roles run as QEMU VMs with a kernel of their own (kernel NFS, LVM, real reboots), comma-separated, or none (default: ${DEFAULT_VM_ROLES.join(",")})` },
  },
  async run({ args }) {
    requireRoot(); // before anything is read or written
    const { ctx, stateDir, loaded } = context({ file: specFileOf(args), stateDir: args.state });
    const started = performance.now();
    const state = await labUp({ spec: ctx.spec, topo: ctx.topo, stateDir, specFile: loaded.source.file, only: args.only?.split(",").filter(Boolean), vmRoles: vmRolesOf(args.vm), artifacts: renderAll(ctx), log });
    for (const h of state.hosts) process.stdout.write(`  ${bold(h.name.padEnd(16))} ${h.address.padEnd(15)} fmc lab ssh ${h.name}\n`);
    process.stdout.write(`lab ${state.lab}: ${n(state.hosts.length, "host")} up in ${((performance.now() - started) / 1000).toFixed(1)} s. fmc plan and fmc apply now target the lab; fmc lab down removes it.\n`);
  },
});

const status = defineCommand({
  meta: { name: "status", description: "Show the lab's hosts and whether they run and answer SSH" },
  async run() {
    const s = await labStatus();
    if (!s.state) {
      process.stdout.write("no lab is up\n");
      return;
    }
    process.stdout.write(`lab ${s.state.lab}, owned by ${s.state.stateDir}\n`);
    for (const h of s.hosts) process.stdout.write(`  ${bold(h.name.padEnd(16))} ${h.address.padEnd(15)} ${h.running ? "running" : red("stopped")} ${h.ssh ? "ssh ok" : red("no ssh")}\n`);
    process.exitCode = s.hosts.every((h) => h.running && h.ssh) ? 0 : 1;
  },
});

const down = defineCommand({
  meta: { name: "down", description: "Remove this checkout's lab and anything labelled fmclab (idempotent, also after a crash)" },
  args: {
    spec: specArg,
    file: fileArg,
    state: stateArg,
    force: { type: "boolean", description: "remove the lab even if another checkout (state directory) started it", default: false },
  },
  async run({ args }) {
    requireRoot();
    const r = await labDown({ stateDir: labStateDir({ file: specFileOf(args), state: args.state }), force: args.force, log });
    process.stdout.write(r.removed ? "lab removed\n" : "no lab to remove\n");
  },
});

/**
 * The ssh command line for a lab host: the lab's key and nothing else (no agent key is
 * tried first), the host key lab up recorded and no other (StrictHostKeyChecking=yes:
 * an unknown or changed key is refused, never added). The words after -- are run by the
 * host's shell, as ssh runs them.
 */
export function labSshArgv(t: LabSshTarget, command: readonly string[]): string[] {
  if (t.knownHostsFile.includes('"')) throw new FmcError("LAB_SSH", `the lab's known_hosts path ${t.knownHostsFile} has a double quote, which ssh's -o can't carry`);
  return [
    "ssh",
    "-i", t.identityFile,
    "-o", "IdentitiesOnly=yes",
    "-o", `UserKnownHostsFile="${t.knownHostsFile}"`,
    "-o", "GlobalKnownHostsFile=/dev/null",
    "-o", "StrictHostKeyChecking=yes",
    "-p", String(t.port),
    "-l", t.user,
    t.address,
    ...(command.length ? ["--", ...command] : []),
  ];
}

/** Refuses, before ssh runs, a key or known_hosts file that is missing, or a key ssh would refuse to use. */
export function checkLabSshFiles(t: LabSshTarget): void {
  for (const [file, what] of [[t.identityFile, "the lab's SSH key"], [t.knownHostsFile, "the lab's known_hosts"]] as const) {
    if (!existsSync(file)) throw new FmcError("LAB_SSH", `${what} ${file} is missing`, "fmc lab up writes it: fmc lab down, then fmc lab up");
  }
  const mode = statSync(t.identityFile).mode & 0o777;
  if (mode & 0o077) throw new FmcError("LAB_SSH", `the lab's SSH key ${t.identityFile} is readable by others (mode ${mode.toString(8).padStart(4, "0")}): ssh refuses such a key`, `chmod 600 ${t.identityFile}`);
}

/**
 * Runs a program with this terminal and passes its exit code on (128 + signal when a
 * signal ended it). Ctrl-C reaches the program, which decides; fmc waits for its code.
 */
async function runAttached(program: string, args: readonly string[]): Promise<number> {
  const wait = () => undefined;
  process.on("SIGINT", wait);
  try {
    const child = spawn(program, args, { stdio: "inherit" });
    return await new Promise<number>((done) => {
      child.once("error", (e) => {
        process.stderr.write(`${e.message}\n`);
        done(127);
      });
      child.once("exit", (c, signal) => done(c ?? (signal ? 128 + (osConstants.signals[signal] ?? 0) : 1)));
    });
  } finally {
    process.off("SIGINT", wait);
  }
}

const ssh = defineCommand({
  meta: {
    name: "ssh",
    // the words after "--" are the remote command's, not fmc's options (read by cli/main.ts)
    ...{ passThrough: true },
    description:
      "Log in to a lab host as root over SSH with the lab's own key and the host keys lab up recorded (fmc lab ssh HOST), or run a command there (fmc lab ssh HOST -- CMD [ARG…], run by its shell as ssh runs it); exits with ssh's exit code",
  },
  args: { host: { type: "positional", description: "a lab host's name (fmc lab status lists them)", required: true } },
  async run({ args, rawArgs }) {
    requireRoot(); // the lab's state and key are root's
    const at = rawArgs.indexOf("--");
    const target = labSshTarget(args.host);
    checkLabSshFiles(target);
    const [program, ...rest] = labSshArgv(target, at >= 0 ? rawArgs.slice(at + 1) : []);
    process.exitCode = await runAttached(program!, rest);
  },
});

const exec = defineCommand({
  meta: {
    name: "exec",
    // the words after "--" are the command's own, not fmc's options (read by cli/main.ts)
    ...{ passThrough: true },
    description: "Run a command on a lab host, or in the lab's `internet` namespace, as root: fmc lab exec HOST -- CMD [ARG…]; prints its output and exits with its exit code",
  },
  args: { host: { type: "positional", description: "a lab host's name, or internet", required: true } },
  async run({ args, rawArgs }) {
    requireRoot();
    const at = rawArgs.indexOf("--");
    const command = at >= 0 ? rawArgs.slice(at + 1) : [];
    if (command.length === 0) throw new FmcError("USAGE", "no command given", `fmc lab exec ${args.host} -- CMD [ARG…] (the command after --)`);
    const [program, ...rest] = labExecCommand(args.host, command);
    process.exitCode = await runAttached(program!, rest);
  },
});

const reboot = defineCommand({
  meta: { name: "reboot", description: "Reboot a lab host from inside (systemctl reboot; a VM reboots its own kernel) and wait until it has booted again and SSH answers" },
  args: {
    host: { type: "positional", description: "a lab host's name", required: true },
    timeout: { type: "string", description: "seconds to wait for the host to answer SSH again", default: "240" },
  },
  async run({ args }) {
    requireRoot();
    const timeout = Number(args.timeout);
    if (!Number.isInteger(timeout) || timeout < 1 || timeout > 3600) throw new FmcError("USAGE", `--timeout ${args.timeout}: whole seconds from 1 to 3600 please`);
    log(`${args.host}: rebooting`);
    const ms = await labReboot(args.host, timeout * 1000);
    process.stdout.write(`${args.host} rebooted: SSH answers again after ${(ms / 1000).toFixed(1)} s\n`);
  },
});

export const lab = defineCommand({
  meta: { name: "lab", description: "A local lab: real Linux hosts in network namespaces on this machine, each LAN subnet its own segment behind the firewall host, and an `internet` namespace in front of the VPS" },
  subCommands: { up, status, down, exec, ssh, reboot },
});
