// The lab's root filesystem build reports debootstrap's stages as they happen (a minute
// that used to be silent): a real debootstrap run's output, replayed line by line with a
// clock that advances a second per line, gives one line per stage, in order.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { debootstrapProgress } from "../../src/lab/rootfs.js";
import { ROOT } from "../helpers.js";

const OUTPUT = readFileSync(join(ROOT, "test/fixtures/debootstrap/bookworm-minbase.stdout"), "utf8").split("\n").filter(Boolean);

test("a real debootstrap run becomes one progress line per stage, with the packages counted", () => {
  const said: string[] = [];
  let clock = 0;
  const feed = debootstrapProgress((l) => said.push(l), () => clock * 1000);
  OUTPUT.forEach((line, i) => {
    clock = i;
    feed(line);
  });
  const downloaded = OUTPUT.filter((l) => /^I: Retrieving \S+ \S+/.test(l)).length;
  assert.ok(downloaded > 50, `${downloaded} packages in a minbase bootstrap`);
  const line = (n: number, text: string) => `debootstrap: ${text}, ${n} s in`;
  const index = (re: RegExp) => OUTPUT.findIndex((l) => re.test(l));
  assert.deepEqual(said, [
    line(index(/^I: Retrieving InRelease/), "fetching the release index"),
    line(index(/^I: Retrieving Packages/), "fetching the package lists"),
    line(index(/^I: Resolving dependencies/), "resolving dependencies"),
    line(index(/^I: Retrieving adduser /), "downloading packages"),
    line(index(/^I: Extracting /), `extracting (${downloaded} packages downloaded)`),
    line(index(/^I: Installing core packages/), "installing"),
    line(index(/^I: Unpacking required packages/), "unpacking"),
    line(index(/^I: Configuring required packages/), "configuring"),
    line(index(/^I: Base system installed successfully/), "base system installed"),
  ]);
  assert.ok(OUTPUT.length > 500 && said.length === 9, `${OUTPUT.length} lines of output, ${said.length} of progress`);
});

test("stages only go forward: the base system's second unpacking and configuring add nothing", () => {
  const said: string[] = [];
  const feed = debootstrapProgress((l) => said.push(l), () => 0);
  for (const l of ["I: Configuring required packages...", "I: Unpacking the base system...", "I: Configuring the base system...", "I: Retrieving bash 5.2.15-2+b7"]) feed(l);
  assert.deepEqual(said, ["debootstrap: configuring, 0 s in"]);
});
