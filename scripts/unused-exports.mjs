#!/usr/bin/env node
// Exports that nothing outside their own file uses (src/, test/, bench/ through
// test/tsconfig.json; src/index.ts is the library's public API and counts as a use), found
// with the TypeScript language service's find-references:
//   node scripts/unused-exports.mjs          lists them; exit 1 when there is one
//   node scripts/unused-exports.mjs --fix    drops `export` where only the own file uses it
// A value (function, const, class) only its file uses loses `export`; a type stays exported
// when an exported declaration of its file mentions it in its signature (callers name it).
// Exports used by nothing at all are listed for a person to delete. KEEP lists deliberate ones.
import ts from "typescript";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, resolve, relative } from "node:path";
import { fileURLToPath } from "node:url";
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
/** Deliberately exported though unused here: what they are for. */
const KEEP = {
  "src/cli/main.ts main": "bin/fmc.js (JavaScript, outside the TypeScript program) calls it",
  "src/hosts/command.ts secret": "the masked part of a command (cmd() takes it): the way a secret goes on a command line's display",
  "src/phases/firewall.ts revertStatusCommand": "prints the state describeRevert parses (operators; test/unit/firewall.test.ts replays its lines)",
};
/** Files left alone: the LVM and mount operations are kept whole for the storage work that uses them. */
const SKIP_FILES = new Set(["src/ops/lvm.ts", "src/ops/mount.ts", ...(process.env.SKIP ?? "").split(",").filter(Boolean)]);
const cfg = ts.getParsedCommandLineOfConfigFile(resolve(ROOT, "test/tsconfig.json"), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => {} });
const files = cfg.fileNames;
const host = {
  getScriptFileNames: () => files, getScriptVersion: () => "1",
  getScriptSnapshot: (f) => { try { return ts.ScriptSnapshot.fromString(readFileSync(f, "utf8")); } catch { return undefined; } },
  getCurrentDirectory: () => ROOT, getCompilationSettings: () => cfg.options, getDefaultLibFileName: (o) => ts.getDefaultLibFilePath(o),
  fileExists: ts.sys.fileExists, readFile: ts.sys.readFile, readDirectory: ts.sys.readDirectory, directoryExists: ts.sys.directoryExists, getDirectories: ts.sys.getDirectories,
};
const ls = ts.createLanguageService(host, ts.createDocumentRegistry());
const program = ls.getProgram();
const isTypeDecl = (n) => ts.isInterfaceDeclaration(n) || ts.isTypeAliasDeclaration(n);
const exportedStmt = (n) => (ts.canHaveModifiers(n) ? ts.getModifiers(n) : undefined)?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword);
const edits = new Map(); // file -> [pos of export keyword]
const report = { unexportValue: [], unexportType: [], keepType: [], unused: [] };
for (const sf of program.getSourceFiles()) {
  const rel = relative(ROOT, sf.fileName);
  if (!rel.startsWith("src/") || rel === "src/index.ts" || SKIP_FILES.has(rel)) continue;
  for (const st of sf.statements) {
    if (!exportedStmt(st)) continue;
    const ids = ts.isVariableStatement(st) ? st.declarationList.declarations.map((d) => d.name).filter(ts.isIdentifier) : st.name && ts.isIdentifier(st.name) ? [st.name] : [];
    if (ids.length !== 1) continue; // multi-declaration statements: leave alone
    const id = ids[0];
    const refs = (ls.findReferences(sf.fileName, id.getStart(sf)) ?? []).flatMap((r) => r.references);
    if (refs.some((e) => e.fileName !== sf.fileName)) continue;
    const inside = refs.filter((e) => !e.isDefinition);
    const item = `${rel}:${sf.getLineAndCharacterOfPosition(id.getStart(sf)).line + 1} ${id.text}`;
    if (KEEP[`${rel} ${id.text}`]) continue;
    if (!inside.length) { report.unused.push(item); continue; }
    if (isTypeDecl(st)) {
      // mentioned in the signature of another exported declaration of this file?
      const inSignature = inside.some((e) => {
        let n = ts.getTokenAtPosition(sf, e.textSpan.start);
        let inBody = false;
        while (n.parent && n.parent !== sf) {
          if (ts.isBlock(n) || (ts.isArrowFunction(n.parent) && n.parent.body === n) || (ts.isVariableDeclaration(n.parent) && n.parent.initializer === n && !ts.isArrowFunction(n) && !ts.isFunctionExpression(n))) inBody = true;
          n = n.parent;
        }
        return !inBody && n !== st && exportedStmt(n);
      });
      if (inSignature) { report.keepType.push(item); continue; }
      report.unexportType.push(item);
    } else report.unexportValue.push(item);
    const kw = ts.getModifiers(st).find((m) => m.kind === ts.SyntaxKind.ExportKeyword);
    edits.set(sf.fileName, [...(edits.get(sf.fileName) ?? []), kw.getStart(sf)]);
  }
}
const say = (title, items) => items.length && console.log(`${title} (${items.length}):\n  ${items.join("\n  ")}`);
say("only their own file uses these values: drop `export` (--fix)", report.unexportValue);
say("only their own file uses these types: drop `export` (--fix)", report.unexportType);
say("used by nothing: delete them, or say in KEEP why they stay", report.unused);
if (!process.argv.includes("--fix")) process.exitCode = report.unexportValue.length + report.unexportType.length + report.unused.length ? 1 : 0;
else {
  for (const [file, positions] of edits) {
    let text = readFileSync(file, "utf8");
    for (const p of positions.sort((a, b) => b - a)) {
      if (!text.startsWith("export ", p)) throw new Error(`${file}@${p}: no export keyword`);
      text = text.slice(0, p) + text.slice(p + "export ".length);
    }
    writeFileSync(file, text);
  }
  console.log(`dropped ${[...edits.values()].flat().length} exports in ${edits.size} files`);
}
