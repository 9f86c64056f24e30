// The k3s binary as day-2 commands call it on a node: fmc installs it in /opt/bin on Flatcar
// (its /usr is read-only) and in /usr/local/bin elsewhere (k3sBinDir in src/hosts/os.ts), and
// a non-interactive SSH shell's PATH may have neither, so the command finds it itself.
import { quote, script, type Command } from "../hosts/command.js";

const FIND = 'b=/usr/local/bin/k3s; if [ -x /opt/bin/k3s ]; then b=/opt/bin/k3s; fi';

/** `k3s ARGS…` on the node, each argument quoted. */
export function k3sCli(...args: string[]): Command {
  return script(`${FIND}; exec "$b" ${args.map(quote).join(" ")}`, `k3s ${args.map(quote).join(" ")}`);
}

/** `k3s kubectl ARGS…` on a server (K3s's embedded kubectl reads the admin kubeconfig there). */
export const kubectl = (...args: string[]): Command => k3sCli("kubectl", ...args);
