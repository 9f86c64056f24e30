// The top-level commands, known without loading them: `fmc --help`, "did you mean" and
// the way to each command's module. A command's module (and everything it imports: zod,
// the renderers, ssh2 …) loads only when that command runs or shows its own --help.
// test/unit/cli.test.ts keeps this table and the modules in step.
import type { CommandDef } from "citty";

export type CommandGroup = "spec" | "hosts" | "day2" | "infra" | "lab";

export const GROUP_TITLES: Record<CommandGroup, string> = {
  spec: "THE SPEC",
  hosts: "THE HOSTS",
  day2: "DAY 2",
  infra: "PROVISIONING AND AIR GAP",
  lab: "LAB",
};

interface CommandEntry {
  readonly group: CommandGroup;
  /** One line for `fmc --help`; the command's own --help says the rest. */
  readonly summary: string;
  readonly load: () => Promise<CommandDef<any>>;
}

const spec = () => import("./spec-commands.js");
const engine = () => import("./apply-commands.js");

export const COMMANDS = {
  init: { group: "spec", summary: "Write the seed topology as a commented spec to edit", load: () => spec().then((m) => m.init) },
  validate: { group: "spec", summary: "Check the spec and report every problem with its path", load: () => spec().then((m) => m.validate) },
  render: { group: "spec", summary: "Render every artifact (Terraform, Ignition, K3s, HAProxy, …) into a directory", load: () => spec().then((m) => m.render) },
  schema: { group: "spec", summary: "Print the spec's JSON Schema (for editor completion)", load: () => spec().then((m) => m.schema) },
  docs: { group: "spec", summary: "Write docs/spec.md, the spec reference generated from the schema", load: () => spec().then((m) => m.docs) },
  plan: { group: "hosts", summary: "Show exactly what apply would change, read from the hosts (the lab's while one is up)", load: () => engine().then((m) => m.plan) },
  apply: { group: "hosts", summary: "Apply the plan: phases in order, hosts in parallel, safe to re-run (on the lab while one is up)", load: () => engine().then((m) => m.apply) },
  facts: { group: "hosts", summary: "Show what plan reads from one host (every fact, or one kind), to debug a plan", load: () => import("./facts-commands.js").then((m) => m.facts) },
  secrets: { group: "hosts", summary: "The generated secrets: list them, or show one on purpose", load: () => import("./secrets-commands.js").then((m) => m.secrets) },
  kubeconfig: { group: "hosts", summary: "Fetch the admin kubeconfig, pointed at the API VIP, into ~/.kube/config", load: () => import("./kubeconfig-commands.js").then((m) => m.kubeconfig) },
  node: { group: "day2", summary: "Add, remove or replace a K3s node", load: () => import("./node-commands.js").then((m) => m.node) },
  upgrade: { group: "day2", summary: "Upgrade K3s: servers one at a time, then agents in batches", load: () => import("./upgrade-commands.js").then((m) => m.upgrade) },
  certs: { group: "day2", summary: "Certificate expiry on every K3s server; certs rotate makes new ones", load: () => import("./certs-commands.js").then((m) => m.certs) },
  etcd: { group: "day2", summary: "K3s's embedded etcd: health, leader, size of every member", load: () => import("./etcd-commands.js").then((m) => m.etcd) },
  backup: { group: "day2", summary: "Back up PostgreSQL databases or an etcd snapshot", load: () => import("./backup-commands.js").then((m) => m.backup) },
  restore: { group: "day2", summary: "Restore a PostgreSQL backup or the K3s cluster from an etcd snapshot", load: () => import("./backup-commands.js").then((m) => m.restore) },
  wireguard: { group: "day2", summary: "The WireGuard tunnel: add remote-admin peers, rotate the site tunnel's keys", load: () => import("./wireguard-commands.js").then((m) => m.wireguard) },
  reset: { group: "day2", summary: "Tear down the K3s cluster on every node (asks first)", load: () => import("./reset-commands.js").then((m) => m.reset) },
  provision: { group: "infra", summary: "Run Terraform or OpenTofu on the rendered modules (libvirt VMs, Cloudflare DNS); a VM is replaced only with --allow-replace", load: () => import("./provision-commands.js").then((m) => m.provisionCommand) },
  bundle: { group: "infra", summary: "Assemble a K3s bundle that apply installs from (air-gapped clusters)", load: () => import("./bundle-commands.js").then((m) => m.bundleCommand) },
  lab: { group: "lab", summary: "A local lab: real Linux hosts on this machine that plan and apply target", load: () => import("./lab-commands.js").then((m) => m.lab) },
} as const satisfies Record<string, CommandEntry>;

type CommandName = keyof typeof COMMANDS;

export const COMMAND_NAMES = Object.keys(COMMANDS) as CommandName[];

