// One shape for fmc's nftables rulesets: a table of its own (recreated atomically on
// load, so other tables stay untouched), default-drop input and forward chains with the
// usual stateful preamble, and NAT chains.
import { HEADER, lines } from "./types.js";

export interface NftRules {
  readonly input: readonly string[];
  readonly forward: readonly string[];
  readonly prerouting: readonly string[];
  readonly postrouting: readonly string[];
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
