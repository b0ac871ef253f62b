/**
 * Runs every test file of the three kinds (test/unit, test/integration, test/system) in two
 * lanes side by side, and prints one summary for both:
 * - the pool: files that share nothing (each starts its own identity provider, servers,
 *   private D-Bus session and keyring, redis-server, temp folders, on free ports), several
 *   at a time (TEST_CONCURRENCY, default 2: with 3 beside the exclusive lane, timing-bound cases starved on 2 cores);
 * - the exclusive lane: files whose assertions bound wall-clock time across many OS
 *   processes (fleets, locks, leases, the demo's run, a 2- or 3-second token in another runtime or in Chromium),
 *   one at a time, so that at most one of them shares the machine with the pool
 *   (TEST_LANES=after: the lane runs alone once the pool has ended).
 * - alone, after both: the multi-process fleets on files and keyrings, whose call counts and
 *   refresh counts starved beside the pool on a 2-core machine (a 15 s fleet made 415 calls
 *   where it needs 450 to mean anything).
 * Longest files start first in each lane. The pool reports as it goes; the exclusive lane's
 * report follows when it ends. Exit code 1 when any test failed.
 * Usage: node scripts/run-tests.mjs [file ...]   (default: every test file)
 */
import { spawn } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

const KINDS = ["test/unit", "test/integration", "test/system"];

/** One at a time, longest first: timing bounds across OS processes. */
const EXCLUSIVE = [
  "test/integration/redis-fleet.test.ts",
  "test/integration/multiprocess.test.ts",
  "test/system/demo.test.ts",
  "test/integration/dpop-multiprocess.test.ts",
  "test/integration/lock-bounds.test.ts",
  "test/integration/lock-safety.test.ts",
  "test/integration/lock.test.ts",
  "test/integration/redis-windows.test.ts",
  "test/system/runtimes.test.ts",
  "test/system/browser.test.ts",
];

/** Run alone once the pool and the exclusive lane have ended: the most CPU-sensitive fleets. */
const ALONE = [
  "test/integration/multiprocess.test.ts",
  "test/integration/dpop-multiprocess.test.ts",
  "test/integration/resource-fleet.test.ts",
];

/** Pool files that take longest (seconds on a quiet 2-core machine, roughly): started first. */
const LONG_FIRST = [
  "test/system/pack.test.ts",
  "test/integration/interceptor.test.ts",
  "test/system/examples-cli.test.ts",
  "test/integration/store-contract.test.ts",
  "test/integration/keyring-store.test.ts",
  "test/system/testing-entry.test.ts",
  "test/integration/token-manager-providers.test.ts",
  "test/integration/properties.test.ts",
  "test/integration/redis-store.test.ts",
];

async function allFiles() {
  const files = [];
  for (const kind of KINDS) {
    for (const name of (await readdir(kind)).sort()) if (name.endsWith(".test.ts")) files.push(`${kind}/${name}`);
  }
  return files;
}

const rank = (list) => (file) => {
  const i = list.indexOf(file);
  return i === -1 ? list.length : i;
};

/** One `node --test` run; its TAP goes to `tap` for the summary, its spec report to `out`. */
function lane(files, concurrency, tap, out) {
  if (files.length === 0) return Promise.resolve(0);
  const args = [
    "--import",
    "tsx",
    "--test",
    `--test-concurrency=${concurrency}`,
    "--test-reporter=spec",
    `--test-reporter-destination=${out}`,
    "--test-reporter=tap",
    `--test-reporter-destination=${tap}`,
    ...files,
  ];
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "inherit", "inherit"] });
    child.on("exit", (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}

/** The run's totals from its TAP summary lines (`# tests 12`, `# pass 12`, ...). */
async function totals(tap) {
  const text = await readFile(tap, "utf8").catch(() => "");
  const sum = {};
  for (const [, key, value] of text.matchAll(/^# (tests|suites|pass|fail|cancelled|skipped|todo|duration_ms) ([\d.]+)$/gm)) {
    sum[key] = Number(value);
  }
  return sum;
}

const requested = process.argv.slice(2);
const files = requested.length > 0 ? requested : await allFiles();
const alone = files.filter((f) => ALONE.includes(f));
const exclusive = files.filter((f) => EXCLUSIVE.includes(f) && !ALONE.includes(f)).sort((a, b) => rank(EXCLUSIVE)(a) - rank(EXCLUSIVE)(b));
const pool = files.filter((f) => !EXCLUSIVE.includes(f) && !ALONE.includes(f)).sort((a, b) => rank(LONG_FIRST)(a) - rank(LONG_FIRST)(b));
const concurrency = Number(process.env.TEST_CONCURRENCY ?? 2);

const folder = await mkdtemp(join(tmpdir(), "connect-oidc-run-tests-"));
const started = performance.now();
console.log(
  `pool: ${pool.length} files, ${concurrency} at a time; exclusive lane: ${exclusive.length} files, one at a time, ` +
    `${process.env.TEST_LANES === "after" ? "after the pool" : "beside the pool"}; then ${alone.length} alone`,
);
const runPool = () => lane(pool, concurrency, join(folder, "pool.tap"), "stdout");
const runExclusive = () => lane(exclusive, 1, join(folder, "exclusive.tap"), join(folder, "exclusive.txt"));
const [poolCode, exclusiveCode] =
  process.env.TEST_LANES === "after" ? [await runPool(), await runExclusive()] : await Promise.all([runPool(), runExclusive()]);
if (exclusive.length > 0) {
  console.log("\n── the exclusive lane, one file at a time ──");
  process.stdout.write(await readFile(join(folder, "exclusive.txt"), "utf8").catch(() => ""));
}
if (alone.length > 0) console.log("\n── alone, one file at a time, after both lanes ──");
const aloneCode = await lane(alone, 1, join(folder, "alone.tap"), "stdout");
const lanes = [
  await totals(join(folder, "pool.tap")),
  await totals(join(folder, "exclusive.tap")),
  await totals(join(folder, "alone.tap")),
];
await rm(folder, { recursive: true, force: true });
const add = (key) => lanes.reduce((n, t) => n + (t[key] ?? 0), 0);
const seconds = ((performance.now() - started) / 1000).toFixed(1);
console.log(
  `\nall kinds: tests ${add("tests")}, pass ${add("pass")}, fail ${add("fail")}, cancelled ${add("cancelled")}, ` +
    `skipped ${add("skipped")}, todo ${add("todo")} — ${seconds} s (pool ${((lanes[0].duration_ms ?? 0) / 1000).toFixed(1)} s, ` +
    `exclusive lane ${((lanes[1].duration_ms ?? 0) / 1000).toFixed(1)} s, alone ${((lanes[2].duration_ms ?? 0) / 1000).toFixed(1)} s)`,
);
process.exit(poolCode === 0 && exclusiveCode === 0 && aloneCode === 0 ? 0 : 1);
