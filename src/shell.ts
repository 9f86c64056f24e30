// A word for a POSIX shell: left bare when it is plainly safe, single-quoted otherwise. The
// one quoting every command line and script fmc writes goes through (src/hosts/command.ts
// builds commands with it, src/render/quote.ts refuses control characters first, src/state/
// quotes paths and command lines people copy), kept below all of them.

const SAFE = /^[A-Za-z0-9_@%+=:,./-]+$/;

export function quote(arg: string): string {
  return arg !== "" && SAFE.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}
