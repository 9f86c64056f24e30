// fmc provision, the pure part: which binary runs (terraform or tofu, found on PATH),
// which commands run in which module's working directory, and what the operator is told
// to install when there is no binary. The CLI (src/cli/provision-commands.ts) renders,
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
}

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

/** The commands, module by module: init, then the verb, in that module's directory. */
export function provisionSteps(verb: ProvisionVerb, modules: readonly TerraformModule[], o: StepOptions): ProvisionStep[] {
  const input = o.noInput ? ["-input=false"] : [];
  const verbArgs: Record<ProvisionVerb, string[]> = {
    plan: ["plan", ...input],
    apply: ["apply", ...input, ...(o.autoApprove ? ["-auto-approve"] : [])],
    output: ["output"],
  };
  return modules.flatMap((module) => [
    // without a terminal, -force-copy answers init's "copy the state?" (the old state stays where it was)
    { module, dir: moduleDir(module), args: ["init", ...input, ...(o.migrateState ? ["-migrate-state", ...(o.noInput ? ["-force-copy"] : [])] : [])] },
    { module, dir: moduleDir(module), args: verbArgs[verb] },
  ]);
}
