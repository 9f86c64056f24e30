// The infrastructure services outside K3s: PostgreSQL (its host, data directory and, on
// NFS, an export that lets it in) and FreeIPA (its host).
import { contains, parseCidr } from "../net.js";
import { didYouMean } from "../../errors.js";
import { needHost, type Checker, type Names } from "./context.js";
import { systemPath } from "./storage.js";

export function checkDatabase(c: Checker, names: Names): void {
  const { spec, err } = c;
  const db = spec.database;
  if (!db) return;
  needHost(c, names, "database.host", db.host, "database");
  if (systemPath(db.dataDir)) err("database.dataDir", `${db.dataDir} is a system directory`, "use a directory of its own, such as /var/lib/pgsql");
  if (db.nfsExport === undefined) return;
  const st = spec.storage;
  const exp = st?.exports.find((e) => e.path === db.nfsExport);
  if (!exp) {
    err("database.nfsExport", `PostgreSQL data on NFS needs the export ${db.nfsExport}, which storage.exports does not have`, didYouMean(db.nfsExport, new Set(st?.exports.map((e) => e.path) ?? [])));
    return;
  }
  const dbIp = names.hostIps.get(db.host);
  const allowed = exp.clients.some((x) => {
    const cidr = parseCidr(x.includes("/") ? x : `${x}/32`);
    return typeof cidr === "object" && dbIp !== undefined && contains(cidr, dbIp);
  });
  if (dbIp !== undefined && !allowed) err("database.nfsExport", `export ${exp.path} does not allow ${db.host} (${spec.hosts[names.byName.get(db.host)!]!.address})`);
}

export function checkIdentity(c: Checker, names: Names): void {
  if (c.spec.identity) needHost(c, names, "identity.host", c.spec.identity.host, "identity");
}
