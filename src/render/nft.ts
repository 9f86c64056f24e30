// One shape for fmc's nftables rulesets: a table of its own (recreated atomically on
// load, so other tables stay untouched), default-drop input and forward chains with the
// usual stateful preamble, ICMPv6 neighbour discovery (without it an inet table cuts
// IPv6 on the link) and NAT chains. (The tunnel's marks and MSS clamping live in the
// wireguard phase's own table, src/render/wireguard.ts.)
import { HEADER, lines } from "./types.js";

export interface NftRules {
  readonly input: readonly string[];
  readonly forward: readonly string[];
  readonly prerouting: readonly string[];
  readonly postrouting: readonly string[];
}

/** ICMPv6 a host needs on its links: neighbour and router discovery (hop limit 255, i.e. on-link only), errors, echo. */
const ICMPV6_INPUT = [
  "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert } ip6 hoplimit 255 accept",
  "icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem, echo-request, mld-listener-query } accept",
];

/** `"a"` or `{ "a", "b" }`: an nft value or anonymous set from already-quoted words. */
export function nftSet(words: readonly string[]): string {
  return words.length === 1 ? words[0]! : `{ ${words.join(", ")} }`;
}

export function nftTable(name: string, r: NftRules): string {
  const rules = (xs: readonly string[]) => xs.map((x) => `        ${x}`);
  return lines(
    "#!/usr/sbin/nft -f",
    HEADER("#"),
    `table inet ${name}`,
    `delete table inet ${name}`,
    `table inet ${name} {`,
    "    chain input {",
    "        type filter hook input priority filter; policy drop;",
    "        ct state established,related accept",
    "        ct state invalid drop",
    '        iifname "lo" accept',
    "        ip protocol icmp accept",
    ...rules(ICMPV6_INPUT),
    ...rules(r.input),
    "    }",
    "    chain forward {",
    "        type filter hook forward priority filter; policy drop;",
    "        ct state established,related accept",
    "        ct state invalid drop",
    ...rules(r.forward),
    "    }",
    "    chain prerouting {",
    "        type nat hook prerouting priority dstnat;",
    ...rules(r.prerouting),
    "    }",
    "    chain postrouting {",
    "        type nat hook postrouting priority srcnat;",
    ...rules(r.postrouting),
    "    }",
    "}",
  );
}
