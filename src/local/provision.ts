// fmc provision, the pure part: which binary runs (terraform or tofu, found on PATH),
// which commands run in which module's working directory, what the operator is told
// to install when there is no binary, and which VMs a libvirt plan would destroy and
// whether the operator allowed it. The CLI (src/cli/provision-commands.ts) renders,
// sets the environment and runs these steps.
import { accessSync, constants, statSync } from "node:fs";
import { delimiter, isAbsolute, join } from "node:path";
import { FmcError } from "../errors.js";
import type { Spec } from "../model/schema.js";
import { moduleDir, type TerraformModule } from "../render/terraform.js";

export type ProvisionVerb = "plan" | "apply" | "output";
export type ToolName = "terraform" | "tofu";

export interface Tool {
  readonly name: ToolName;
  /** Absolute path of the binary found on PATH. */
  readonly path: string;
}

/** One command in one module's working directory. */
export interface ProvisionStep {
  readonly module: TerraformModule;
  /** Working directory, relative to the output directory. */
  readonly dir: string;
  readonly args: readonly string[];
  /** `show -json` of the saved plan: fmc reads its output (never shown: it holds secrets) and checks it before going on. */
  readonly checksPlan?: boolean;
  /** `apply` of the saved plan, which Terraform applies without asking: fmc asks first. */
  readonly asks?: boolean;
}

/**
 * The libvirt module's saved plan, relative to its directory: in Terraform's own
 * .terraform/ (git-ignored by out/.gitignore, never touched by fmc render). It holds the
 * state and the variables, secrets included: fmc creates it 0600 and removes it after use.
 */
export const PLAN_FILE = ".terraform/fmc-libvirt.tfplan";

/** The executable file `name` in the first PATH directory that has one. */
function findOnPath(name: string, path: string | undefined): string | undefined {
  for (const dir of (path ?? "").split(delimiter)) {
    if (!dir || !isAbsolute(dir)) continue; // a relative PATH entry would depend on the module's directory
    const file = join(dir, name);
    try {
      if (!statSync(file).isFile()) continue;
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      continue;
    }
  }
  return undefined;
}

/** Where Terraform and OpenTofu come from (their own install pages, read 2026-11). */
const INSTALL_TERRAFORM = [
  "Terraform from HashiCorp's apt repository (https://developer.hashicorp.com/terraform/install):",
  "  wget -O- https://apt.releases.hashicorp.com/gpg | sudo gpg --dearmor -o /usr/share/keyrings/hashicorp-archive-keyring.gpg",
  '  echo "deb [signed-by=/usr/share/keyrings/hashicorp-archive-keyring.gpg] https://apt.releases.hashicorp.com $(lsb_release -cs) main" | sudo tee /etc/apt/sources.list.d/hashicorp.list',
  "  sudo apt update && sudo apt install terraform",
];
const INSTALL_TOFU = [
  "OpenTofu with its installer (https://opentofu.org/docs/intro/install/):",
  "  curl --proto '=https' --tlsv1.2 -fsSL https://get.opentofu.org/install-opentofu.sh -o install-opentofu.sh",
  "  chmod +x install-opentofu.sh   # read it, then:",
  "  ./install-opentofu.sh --install-method deb   (rpm on AlmaLinux, standalone elsewhere)",
];
const hint = (lines: readonly string[]) => lines.join("\n      ");

/**
 * terraform, or tofu: with --tofu, or when the spec encrypts the state (only OpenTofu
 * does), tofu and nothing else; otherwise terraform, else tofu. Neither: a refusal that
 * says what to install.
 */
export function chooseTool(spec: Spec, wantTofu: boolean, path: string | undefined): Tool {
  const tofu = findOnPath("tofu", path);
  if (wantTofu || spec.provisioning.stateEncryption) {
    if (tofu) return { name: "tofu", path: tofu };
    const why = spec.provisioning.stateEncryption
      ? "the spec encrypts the Terraform state (provisioning.stateEncryption), which only OpenTofu does, and tofu is not on PATH"
      : "--tofu: tofu is not on PATH";
    throw new FmcError("PROVISION_NO_TOOL", `${why}; nothing was run`, `install ${hint(INSTALL_TOFU)}`);
  }
  const terraform = findOnPath("terraform", path);
  if (terraform) return { name: "terraform", path: terraform };
  if (tofu) return { name: "tofu", path: tofu };
  throw new FmcError("PROVISION_NO_TOOL", "neither terraform nor tofu is on PATH; nothing was run", `install one of them, then run this again:\n      ${hint(INSTALL_TERRAFORM)}\n      or ${hint(INSTALL_TOFU)}`);
}

export interface StepOptions {
  /** stdin is not a terminal: Terraform must not wait for an answer nobody can give. */
  readonly noInput: boolean;
  /** apply without asking (terraform apply -auto-approve). */
  readonly autoApprove: boolean;
  /** the backend changed: init copies the state to the new one (terraform init -migrate-state). */
  readonly migrateState?: boolean;
}

/**
 * The commands, module by module: init, then the verb, in that module's directory. The
 * libvirt module plans into a saved plan that fmc checks (show -json) before apply
 * applies exactly that plan: a VM replaced or destroyed is a power cut for its host.
 */
export function provisionSteps(verb: ProvisionVerb, modules: readonly TerraformModule[], o: StepOptions): ProvisionStep[] {
  const input = o.noInput ? ["-input=false"] : [];
  const verbArgs: Record<ProvisionVerb, string[]> = {
    plan: ["plan", ...input],
    apply: ["apply", ...input, ...(o.autoApprove ? ["-auto-approve"] : [])],
    output: ["output"],
  };
  return modules.flatMap((module): ProvisionStep[] => {
    const dir = moduleDir(module);
    // without a terminal, -force-copy answers init's "copy the state?" (the old state stays where it was)
    const init: ProvisionStep = { module, dir, args: ["init", ...input, ...(o.migrateState ? ["-migrate-state", ...(o.noInput ? ["-force-copy"] : [])] : [])] };
    if (module !== "libvirt" || verb === "output") return [init, { module, dir, args: verbArgs[verb] }];
    const checked: ProvisionStep[] = [init, { module, dir, args: ["plan", ...input, `-out=${PLAN_FILE}`] }, { module, dir, args: ["show", "-json", PLAN_FILE], checksPlan: true }];
    // a saved plan is applied without Terraform's question: fmc asks unless --yes
    return verb === "plan" ? checked : [...checked, { module, dir, args: ["apply", ...input, PLAN_FILE], ...(o.autoApprove ? {} : { asks: true }) }];
  });
}

/** A VM the plan destroys: replaced (delete and create, in either order) or deleted. */
export interface DomainLoss {
  /** The resource's name, which fmc renders as the host's name. */
  readonly host: string;
  readonly address: string;
  readonly replaced: boolean;
}

const planError = (why: string) =>
  new FmcError("PROVISION_PLAN_JSON", `the libvirt plan could not be read (${why}); nothing was applied`, "run terraform show -json on a saved plan in out/terraform/libvirt to see what it holds, and check that your terraform or tofu is 1.0 or later");

/**
 * The libvirt_domain instances a plan destroys, from `terraform show -json <planfile>`
 * (developer.hashicorp.com/terraform/internals/json-format): resource_changes[] whose
 * change.actions hold "delete" (["delete"], ["delete","create"], ["create","delete"]).
 * Anything else that would not read as that format is refused: a check that can't read
 * the plan must not pass it.
 */
export function domainLosses(json: string): DomainLoss[] {
  let plan: unknown;
  try {
    plan = JSON.parse(json);
  } catch {
    throw planError("not JSON");
  }
  if (!plan || typeof plan !== "object" || Array.isArray(plan)) throw planError("not a JSON object");
  const p = plan as { format_version?: unknown; resource_changes?: unknown };
  // "reject any input which reports an unsupported major version" (the format's own rule)
  if (typeof p.format_version !== "string" || !/^[01]\./.test(p.format_version)) throw planError(`format_version ${JSON.stringify(p.format_version)}, fmc reads 0.x and 1.x`);
  if (p.resource_changes !== undefined && !Array.isArray(p.resource_changes)) throw planError("resource_changes is not a list");
  const losses: DomainLoss[] = [];
  for (const rc of (p.resource_changes ?? []) as unknown[]) {
    const r = rc as { address?: unknown; mode?: unknown; type?: unknown; name?: unknown; change?: { actions?: unknown } };
    if (r?.type !== "libvirt_domain" || r.mode === "data") continue;
    const actions = r.change?.actions;
    if (!Array.isArray(actions) || typeof r.name !== "string" || typeof r.address !== "string") throw planError(`a libvirt_domain change without name, address or actions`);
    if (!actions.includes("delete")) continue;
    losses.push({ host: r.name, address: r.address, replaced: actions.includes("create") });
  }
  return losses;
}

/**
 * Refuses a plan that destroys a VM the operator did not name (--allow-replace HOST), or
 * more than one K3s server at once even when named: etcd keeps quorum only while a
 * majority of servers runs, and a replaced server comes back empty and must rejoin first.
 */
export function checkDomainLosses(losses: readonly DomainLoss[], spec: Spec, allowed: readonly string[]): void {
  const isServer = (name: string) => spec.hosts.some((h) => h.name === name && h.roles.includes("k3s-server"));
  const known = new Set([...spec.hosts.filter((h) => h.vm).map((h) => h.name), ...losses.map((l) => l.host)]);
  const unknown = allowed.filter((a) => !known.has(a));
  if (unknown.length) {
    throw new FmcError("USAGE", `--allow-replace ${unknown.join(", ")}: no VM of that name in the spec or the plan; nothing was applied`, `name hosts with a vm section: ${[...known].sort().join(", ")}`);
  }
  const what = (l: DomainLoss) => `${l.host} (${l.replaced ? "replaced" : "destroyed"}${isServer(l.host) ? ", K3s server" : ""})`;
  const unnamed = losses.filter((l) => !allowed.includes(l.host));
  if (unnamed.length) {
    throw new FmcError(
      "PROVISION_REPLACE_REFUSED",
      `the libvirt plan powers off and destroys ${unnamed.length === 1 ? "a VM" : `${unnamed.length} VMs`} you did not name: ${unnamed.map(what).join(", ")}; nothing was applied`,
      `look at the plan above for why (a changed image, disk, memory or vcpu count replaces a VM); if you mean it, name each host: ${unnamed.map((l) => `--allow-replace ${l.host}`).join(" ")}${unnamed.filter((l) => isServer(l.host)).length > 1 ? " (one K3s server per run)" : ""}`,
    );
  }
  const servers = losses.filter((l) => isServer(l.host));
  if (servers.length > 1) {
    throw new FmcError(
      "PROVISION_REPLACE_SERVERS",
      `the libvirt plan destroys ${servers.length} K3s servers at once (${servers.map((l) => l.host).join(", ")}); etcd would lose its quorum. Nothing was applied`,
      `replace one server per run and let it rejoin before the next (fmc etcd status shows the members): change one server's VM in the spec at a time, or plan one with Terraform's -target=libvirt_domain.${servers[0]!.host}`,
    );
  }
}
