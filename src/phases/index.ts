// The phases of apply, in order. Plan and apply walk this same list.
import type { Phase } from "./phase.js";
import { base } from "./base.js";
import { loadbalancer } from "./loadbalancer.js";

export const PHASES: readonly Phase[] = [
  base, //          hostname, resolver, sysctl, swap, time, keys
  loadbalancer, //  HAProxy + Keepalived
];

export type { Phase, PhaseContext } from "./phase.js";
