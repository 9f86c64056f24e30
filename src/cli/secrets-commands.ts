// fmc secrets list | show NAME: what the secret store holds, and one secret revealed on
// purpose (the Grafana admin password to log in, the admin SSH key for a manual ssh).
import { defineCommand } from "citty";
import { context } from "../project.js";
import { requiredSecrets, version1Name } from "../state/secrets.js";
import { didYouMean, FmcError } from "../errors.js";
import { bold, dim, fileArg, stateArg } from "./ui.js";

const list = defineCommand({
  meta: { name: "list", description: "List the secrets this spec uses (names and purposes, never values)" },
  args: { file: fileArg, state: stateArg, json: { type: "boolean", description: "machine-readable output", default: false } },
  run({ args }) {
    const { ctx, stateDir } = context({ file: args.file, stateDir: args.state });
    const needed = requiredSecrets(ctx.spec);
    if (args.json) {
      process.stdout.write(JSON.stringify({ store: stateDir, secrets: needed.map((s) => ({ name: s.name, kind: s.kind, purpose: s.purpose })) }, null, 2) + "\n");
      return;
    }
    const width = Math.max(...needed.map((s) => s.name.length));
    for (const s of needed) process.stdout.write(`${bold(s.name.padEnd(width))}  ${s.purpose} ${dim(`(${s.kind})`)}\n`);
    process.stdout.write(dim(`stored in ${stateDir}/secrets.json (0600); fmc secrets show NAME prints one\n`));
  },
});

const show = defineCommand({
  meta: { name: "show", description: "Print one secret's value on stdout, on purpose (e.g. fmc secrets show grafana-admin)" },
  args: {
    name: { type: "positional", required: true, valueHint: "NAME", description: "the secret's name (fmc secrets list shows them), e.g. grafana-admin or postgres-owner/app" },
    file: fileArg,
    state: stateArg,
  },
  run({ args }) {
    const { ctx } = context({ file: args.file, stateDir: args.state });
    const needed = requiredSecrets(ctx.spec);
    // a name from before owned secrets were what/owner (postgres-app): its one secret, said so
    const was = needed.filter((s) => version1Name(s.name) === args.name);
    const secret = needed.find((s) => s.name === args.name) ?? (was.length === 1 ? was[0] : undefined);
    if (!secret) {
      const names = needed.map((s) => s.name);
      throw new FmcError("SECRET_UNKNOWN", `this spec has no secret named ${args.name}`, didYouMean(args.name, names) ?? `known: ${names.join(", ")}`);
    }
    if (secret.name !== args.name) process.stderr.write(dim(`${args.name} is now named ${secret.name}\n`));
    // the admin key is stored with its public half; the private key is what ssh -i needs
    const value = secret.name === "admin-ssh" ? ctx.secrets.adminPrivateKey()! : ctx.secrets.get(secret.name);
    if (process.stdout.isTTY) process.stderr.write(dim(`secret ${secret.name}, shown on purpose; it stays in your terminal's scrollback\n`));
    process.stdout.write(value.endsWith("\n") ? value : `${value}\n`);
  },
});

export const secrets = defineCommand({
  meta: { name: "secrets", description: "The generated secrets: list them, or show one on purpose" },
  subCommands: { list, show },
});
