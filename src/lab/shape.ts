// A lab VM's shape read from the rendered Terraform (terraform/libvirt/main.tf.json), the
// way terraform-provider-libvirt would create the domain: vCPUs, memory, the disks and their
// sizes in the order they are attached (vda the root, vdb the first data disk, …). The lab
// stands in for the provider; memory and vCPUs are scaled to what this machine can emulate
// beside the containers, and the log says so.
import { FmcError } from "../errors.js";
import type { Artifact } from "../render/types.js";

export const TERRAFORM_LIBVIRT_MAIN = "terraform/libvirt/main.tf.json";

export interface VmShape {
  readonly vcpu: number;
  readonly memoryMiB: number;
  readonly rootGiB: number;
  /** The data disks in attachment order: vdb, vdc, … */
  readonly dataDisks: ReadonlyArray<{ readonly name: string; readonly sizeGiB: number }>;
  /** Each NIC's MAC where the rendered domain fixes one (the firewall's, which its cloud-init matches by MAC), in NIC order. */
  readonly nicMacs: ReadonlyArray<string | undefined>;
}

/** What the lab gives an emulated VM at most (software emulation on a small machine, beside the containers). */
export const LAB_VM_LIMITS = { vcpu: 1, memoryMiB: 1024 } as const;

interface TfVolume {
  name?: string;
  size?: number;
}
interface TfDomain {
  vcpu?: number;
  memory?: number;
  disk?: Array<{ volume_id?: string }>;
  network_interface?: Array<{ mac?: string }>;
}

const GiB = 1024 ** 3;
/** `${libvirt_volume.NAME.id}`: the provider's reference to a volume resource. */
const VOLUME_REF = /^\$\{libvirt_volume\.([A-Za-z0-9_-]+)\.id\}$/;
/** The volume names the renderer writes: HOST-root.qcow2, HOST-DISK.qcow2. */
const volumeDiskName = (host: string, name: string | undefined) => name?.startsWith(`${host}-`) && name.endsWith(".qcow2") ? name.slice(host.length + 1, -".qcow2".length) : undefined;

/** Every domain's shape, from the rendered module. */
export function vmShapes(artifacts: readonly Artifact[]): Map<string, VmShape> {
  const main = artifacts.find((a) => a.path === TERRAFORM_LIBVIRT_MAIN);
  const out = new Map<string, VmShape>();
  if (!main) return out;
  const tf = JSON.parse(main.content) as { resource?: { libvirt_domain?: Record<string, TfDomain>; libvirt_volume?: Record<string, TfVolume> } };
  const volumes = tf.resource?.libvirt_volume ?? {};
  for (const [host, d] of Object.entries(tf.resource?.libvirt_domain ?? {})) {
    const bad = (why: string) => new FmcError("LAB_SHAPE", `${TERRAFORM_LIBVIRT_MAIN}: libvirt_domain.${host}: ${why}`, "fmc render writes this file; render again");
    if (!Number.isInteger(d.vcpu) || !Number.isInteger(d.memory)) throw bad("no vcpu or memory");
    const disks = (d.disk ?? []).map((x) => {
      const ref = VOLUME_REF.exec(x.volume_id ?? "")?.[1];
      const v = ref ? volumes[ref] : undefined;
      if (!v || !Number.isInteger(v.size)) throw bad(`disk ${x.volume_id ?? "?"} names no volume with a size`);
      const name = volumeDiskName(host, v.name);
      if (!name) throw bad(`volume ${ref} is not named ${host}-NAME.qcow2`);
      return { name, sizeGiB: v.size! / GiB };
    });
    const [root, ...data] = disks;
    if (!root || root.name !== "root") throw bad("its first disk is not its root volume");
    const nicMacs = (d.network_interface ?? []).map((n) => {
      if (n.mac !== undefined && !/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(n.mac)) throw bad(`a NIC's mac ${JSON.stringify(n.mac)} is not a MAC address`);
      return n.mac;
    });
    out.set(host, { vcpu: d.vcpu!, memoryMiB: d.memory!, rootGiB: root.sizeGiB, dataDisks: data, nicMacs });
  }
  return out;
}

/** The shape the lab gives a VM: the rendered one, scaled down to the lab's limits. */
export function labVmShape(s: VmShape): VmShape & { readonly scaled: boolean } {
  const vcpu = Math.min(s.vcpu, LAB_VM_LIMITS.vcpu);
  const memoryMiB = Math.min(s.memoryMiB, LAB_VM_LIMITS.memoryMiB);
  return { ...s, vcpu, memoryMiB, scaled: vcpu !== s.vcpu || memoryMiB !== s.memoryMiB };
}
