// Semantic checks on a structurally valid spec, one module per concern under checks/.
// Each check appends problems; none stops the others, so one run shows every mistake.
// The order below is the order problems are found in: later checks use the names and
// addresses earlier ones collected (a VIP on a host's address, a rule naming a subnet).
import type { Spec } from "./schema.js";
import { newChecker, type CheckProblem, type Explicit } from "./checks/context.js";
import { checkNetwork } from "./checks/network.js";
import { checkHosts } from "./checks/hosts.js";
import { checkSshKeys, type KeyReader } from "./checks/ssh-keys.js";
import { checkVips } from "./checks/vips.js";
import { checkK3s } from "./checks/k3s.js";
import { checkStorage } from "./checks/storage.js";
import { checkDatabase, checkIdentity } from "./checks/infra.js";
import { checkWireguard } from "./checks/wireguard.js";
import { checkFirewall } from "./checks/firewall.js";
import { checkCloudflare } from "./checks/cloudflare.js";
import { checkEdge } from "./checks/edge.js";
import { checkRenderedNames } from "./checks/names.js";

// what the rest of fmc uses from the checks
export type { KeyReader } from "./checks/ssh-keys.js";
export { isPublicKey } from "./checks/ssh-keys.js";
export { K3S_API_PORT, rolePorts } from "./checks/ports.js";
export { recordInZone } from "./checks/cloudflare.js";

export function semanticProblems(spec: Spec, readKeyFile?: KeyReader, explicit: Explicit = () => true): CheckProblem[] {
  const { checker: c, problems } = newChecker(spec, explicit);
  const layout = checkNetwork(c);
  const names = checkHosts(c, layout);
  checkSshKeys(c, readKeyFile);
  checkVips(c, layout, names);
  checkK3s(c, layout, names);
  checkStorage(c, names);
  checkDatabase(c, names);
  checkIdentity(c, names);
  checkWireguard(c, names);
  checkFirewall(c, layout, names);
  checkCloudflare(c);
  checkEdge(c, readKeyFile);
  checkRenderedNames(c);
  return problems;
}
