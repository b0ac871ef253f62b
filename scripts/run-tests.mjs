/**
 * Runs every test file of the three kinds (test/unit, test/integration, test/system) in four
 * lanes side by side, and prints one summary for all:
 * - the pool: files that share nothing (each starts its own identity provider, servers,
 *   private D-Bus session and keyring, redis-server, temp folders, on free ports), two at a
 *   time (TEST_CONCURRENCY), at a lower CPU priority (`nice`, TEST_NICE, default 10), and
 *   beside it, one at a time, the pool's files that mostly wait (WAITING);
 * - two timed lanes, one file at a time each, at normal priority: the files whose assertions
 *   bound wall-clock time or count calls across many OS processes (fleets, locks, leases, the
 *   demo's run, a 2- or 3-second token in another runtime or in Chromium). They are mostly
 *   waiting; when their processes need the CPU, they get it before the pool does (a 15 s
 *   fleet beside a pool at equal priority made 415 calls where it needs 450 to mean
 *   anything). Which fleet may run beside which: see TIMED.
 * The pool reports as it goes, each other lane when it ends. Exit code 1 when any test failed.
 * Each file runs as its esbuild bundle (scripts/test-bundles.mjs: about 1 s of CPU less per
 * file than under `--import tsx`). TEST_TSX=1 runs the .ts files under tsx instead;
 * TEST_SOURCE_MAPS=1 maps stack traces in the bundles back to the .ts files.
 * TEST_LANES=serial runs the lanes one after another (for a machine with one core).
 * With --typecheck (as `npm test` runs it), `tsc --noEmit` runs beside the tests, niced, and
 * its errors fail the run.
 * Usage: node scripts/run-tests.mjs [--typecheck] [file ...]   (default: every test file)
 */
import { spawn, spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bundleTests } from "./test-bundles.mjs";

const KINDS = ["test/unit", "test/integration", "test/system"];

/**
 * The timed files, in groups (longest first in each; seconds alone on a quiet 2-core machine,
 * roughly). The Redis fleet never runs beside another process fleet: its machines hold a 1 s
 * test lease, and 8 of them beside 6 file-store processes once stalled one past it, so a
 * refresh token was sent twice. The file and keyring fleets hold 10 s leases and may run
 * beside each other. So: lane 1 runs the Redis fleet (130 s), then the first file fleet (70);
 * lane 2 runs the files whose processes are few or light (140), then, once the Redis fleet
 * has ended, the other file fleets (70).
 */
const TIMED = {
  redisFleet: ["test/integration/redis-fleet.test.ts"],
  fileFleet: ["test/integration/multiprocess.test.ts"],
  otherFileFleets: ["test/integration/resource-fleet.test.ts", "test/integration/dpop-multiprocess.test.ts"],
  light: [
    "test/system/demo.test.ts",
    "test/integration/lock-bounds.test.ts",
    "test/system/browser.test.ts",
    "test/system/runtimes.test.ts",
    "test/integration/lock-safety.test.ts",
    "test/integration/lock.test.ts",
    "test/integration/redis-windows.test.ts",
  ],
};
const isTimed = (file) => Object.values(TIMED).some((g) => g.includes(file));

/**
 * Pool files that mostly wait (on timeouts, lock leases, a server's delay: seconds alone, wall
 * against CPU): they run one at a time beside the pool, niced, instead of taking one of its
 * two places while a core idles.
 */
const WAITING = [
  "test/integration/interceptor.test.ts", // 22 s, 9 s of CPU
  "test/integration/redis-store.test.ts", // 15, 3
  "test/integration/login-hardening.test.ts", // 10, 2
  "test/integration/interceptor-signals.test.ts", // 8, 3
  "test/integration/login.test.ts", // 7, 2
  "test/integration/login-providers.test.ts", // 6, 1.5
  "test/integration/dpop-idp-nonce.test.ts", // 5, 1.3
];

/** Pool files that take longest (seconds on a quiet 2-core machine, roughly): started first. */
const LONG_FIRST = [
  "test/system/examples-cli.test.ts",
  "test/system/doc-snippets.test.ts",
  "test/system/pack.test.ts",
  "test/system/cold-start.test.ts",
  "test/integration/keyring-store.test.ts",
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

const nice = Number(process.env.TEST_NICE ?? 10);
const canNice = nice > 0 && process.platform !== "win32" && spawnSync("nice", ["-n", "1", "true"]).status === 0;

const underTsx = process.env.TEST_TSX === "1";
const loader = underTsx ? ["--import", "tsx"] : process.env.TEST_SOURCE_MAPS === "1" ? ["--enable-source-maps"] : [];
/** What `node --test` is given for each test file: the file itself under tsx, else its bundle. */
let runnable = (file) => file;

/** One `node --test` run (niced: `nice` > 0); its TAP goes to `tap` for the summary, its spec report to `out`. */
function lane(files, concurrency, tap, out, niced = false) {
  if (files.length === 0) return Promise.resolve(0);
  const args = [
    ...loader,
    "--test",
    `--test-concurrency=${concurrency}`,
    "--test-reporter=spec",
    `--test-reporter-destination=${out}`,
    "--test-reporter=tap",
    `--test-reporter-destination=${tap}`,
    ...files.map(runnable),
  ];
  return new Promise((resolve) => {
    const [command, ...rest] = niced && canNice ? ["nice", "-n", String(nice), process.execPath, ...args] : [process.execPath, ...args];
    const child = spawn(command, rest, { stdio: ["ignore", "inherit", "inherit"] });
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

/** `tsc --noEmit` for the whole project, niced: its exit code and what it printed. */
function typecheck() {
  const tsc = [process.execPath, join(import.meta.dirname, "..", "node_modules", "typescript", "bin", "tsc"), "--noEmit"];
  const [command, ...rest] = canNice ? ["nice", "-n", String(nice), ...tsc] : tsc;
  return new Promise((resolve) => {
    const child = spawn(command, rest, { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.setEncoding("utf8").on("data", (chunk) => (output += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk) => (output += chunk));
    child.on("exit", (code, signal) => resolve({ code: code ?? (signal ? 1 : 0), output }));
  });
}

const typechecked = process.argv.includes("--typecheck") ? typecheck() : undefined;
const requested = process.argv.slice(2).filter((a) => a !== "--typecheck");
const files = requested.length > 0 ? requested : await allFiles();
const pool = files.filter((f) => !isTimed(f) && !WAITING.includes(f)).sort((a, b) => rank(LONG_FIRST)(a) - rank(LONG_FIRST)(b));
const waiting = files.filter((f) => WAITING.includes(f)).sort((a, b) => rank(WAITING)(a) - rank(WAITING)(b));
const timed = Object.fromEntries(
  Object.entries(TIMED).map(([name, group]) => [
    name,
    files.filter((f) => group.includes(f)).sort((a, b) => rank(group)(a) - rank(group)(b)),
  ]),
);
const concurrency = Number(process.env.TEST_CONCURRENCY ?? 2);
const serial = process.env.TEST_LANES === "serial";

const started = performance.now();
if (!underTsx) {
  const bundles = await bundleTests(files);
  runnable = (file) => bundles.get(file);
}
const folder = await mkdtemp(join(tmpdir(), "connect-oidc-run-tests-"));
// The run's name: what its test files build once for all of them (test/support/npm-pack.ts) is kept under it.
process.env.CONNECT_OIDC_TEST_RUN = `run-${randomUUID()}`;
const runCache = join(import.meta.dirname, "..", "node_modules", ".cache", "connect-oidc-npm-pack", process.env.CONNECT_OIDC_TEST_RUN);
/** A lane: its steps, one after another; each step is one `node --test` run, after the step it names in `after` has ended. */
const step = (out, stepFiles, options = {}) => ({ out, files: stepFiles, ...options });
const lanes = [
  // The pool reports as it goes (stdout); the timed lanes when they end.
  { name: "the pool", steps: [step("pool", pool, { concurrency, niced: true, live: true })] },
  { name: "the pool's waiting files", steps: [step("waiting", waiting, { niced: true })] },
  { name: "timed lane 1", steps: [step("redisFleet", timed.redisFleet), step("fileFleet", timed.fileFleet)] },
  { name: "timed lane 2", steps: [step("light", timed.light), step("otherFileFleets", timed.otherFileFleets, { after: "redisFleet" })] },
];
console.log(
  `pool: ${pool.length} files, ${concurrency} at a time${canNice ? `, nice ${nice}` : ""}; ` +
    `then ${waiting.length} that mostly wait, one at a time; timed lanes: ${lanes
      .slice(2)
      .map((l) => l.steps.map((s) => s.files.length).join(" + "))
      .join(" and ")} files, one at a time each; ` +
    `${serial ? "one lane after another" : "all side by side"}`,
);
/** When each step has ended (Node 20 has no Promise.withResolvers). */
const ended = new Map(
  lanes
    .flatMap((l) => l.steps)
    .map((s) => {
      let resolve;
      const promise = new Promise((r) => (resolve = r));
      return [s.out, { promise, resolve }];
    }),
);
const runLane = async (l) => {
  let code = 0;
  for (const s of l.steps) {
    if (s.after !== undefined) await ended.get(s.after).promise;
    const out = s.live ? "stdout" : join(folder, `${s.out}.txt`);
    code = Math.max(code, await lane(s.files, s.concurrency ?? 1, join(folder, `${s.out}.tap`), out, s.niced === true));
    ended.get(s.out).resolve();
  }
  return code;
};
const report = async (l) => {
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  console.log(`\n── ${l.name}, ended at ${seconds} s ──`);
  for (const s of l.steps) process.stdout.write(await readFile(join(folder, `${s.out}.txt`), "utf8").catch(() => ""));
};
const codes = [];
if (serial) {
  for (const l of lanes) {
    codes.push(await runLane(l));
    await report(l);
  }
} else {
  const runAndReport = async (l) => {
    const code = await runLane(l);
    await report(l);
    return code;
  };
  codes.push(...(await Promise.all(lanes.map(runAndReport))));
}
const laneTotals = async (l) => {
  const each = await Promise.all(l.steps.map((s) => totals(join(folder, `${s.out}.tap`))));
  const sum = {};
  for (const t of each) for (const [key, value] of Object.entries(t)) sum[key] = (sum[key] ?? 0) + value;
  return sum;
};
const sums = await Promise.all(lanes.map(laneTotals));
await rm(folder, { recursive: true, force: true });
await rm(runCache, { recursive: true, force: true });
if (typechecked !== undefined) {
  const { code, output } = await typechecked;
  console.log(code === 0 ? "\ntsc --noEmit: no errors" : `\ntsc --noEmit: exit ${code}\n${output}`);
  codes.push(code === 0 ? 0 : 1);
}
const add = (key) => sums.reduce((n, t) => n + (t[key] ?? 0), 0);
const seconds = ((performance.now() - started) / 1000).toFixed(1);
const laneSeconds = lanes.map((l, i) => `${l.name} ${((sums[i].duration_ms ?? 0) / 1000).toFixed(1)} s`).join(", ");
console.log(
  `\nall kinds: tests ${add("tests")}, pass ${add("pass")}, fail ${add("fail")}, cancelled ${add("cancelled")}, ` +
    `skipped ${add("skipped")}, todo ${add("todo")} — ${seconds} s (${laneSeconds})`,
);
process.exit(codes.every((c) => c === 0) ? 0 : 1);
