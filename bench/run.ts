/**
 * `npm run bench`: every headline figure side by side with what a user would write or pick
 * instead, measured in the same run on this machine (absolute times on a shared 2-core
 * machine move from run to run; ratios from one run do not). Real oidc-provider, real
 * connect-node servers on loopback, real processes and keyring.
 *
 *   npm run bench                 the table
 *   npm run bench -- --json       one JSON object: { machine, rows }
 *   npm run bench -- --only 1,3   some sections (1–10)
 */
import { cpus } from "node:os";
import { parseArgs } from "node:util";
import { startIdp } from "../test/support/idp.js";
import { coldStartRows } from "./cold-start.js";
import { dpopRows } from "./dpop.js";
import { fleetRows } from "./fleet.js";
import { heapRows } from "./heap.js";
import { herdRows } from "./herd.js";
import { latencyRows } from "./latency.js";
import { overheadRows } from "./overhead.js";
import { redisFleetRows } from "./redis-fleet.js";
import type { Row } from "./rows.js";
import { verifyRows } from "./verify.js";

const { values } = parseArgs({ options: { json: { type: "boolean", default: false }, only: { type: "string" } } });
const only = values.only === undefined ? undefined : new Set(values.only.split(",").map((s) => s.trim()));
const wanted = (section: string) => only === undefined || only.has(section);

const started = performance.now();
const rows: Row[] = [];
const idp = await startIdp({ accessTokenTtl: 3600 });
try {
  if (wanted("1") || wanted("2")) rows.push(...(await overheadRows(idp)));
  if (wanted("3")) rows.push(...(await herdRows(idp)));
} finally {
  await idp.close();
}
if (wanted("4")) rows.push(...(await latencyRows()));
if (wanted("5")) rows.push(...(await fleetRows()));
if (wanted("6")) rows.push(...(await heapRows()));
if (wanted("7")) {
  for (const r of await coldStartRows()) {
    if (r.kind === "cold-start") {
      rows.push({
        name: `7. cold start, one call with a valid stored login (${r.store}, median of ${r.runs})`,
        ours: `${r.connectOidcMs.toFixed(0)} ms`,
        baseline: `${r.fixedHeaderMs.toFixed(0)} ms`,
        ratio: `${r.ratio.toFixed(3)}×`,
        target: "≤ 1.05×",
        met: r.ratio <= 1.05,
      });
      rows.push({
        name: `7. the same processes' CPU time (user + system, median; less moved by other load)`,
        ours: `${r.connectOidcCpuMs.toFixed(0)} ms`,
        baseline: `${r.fixedHeaderCpuMs.toFixed(0)} ms`,
        ratio: `${r.cpuRatio.toFixed(3)}×`,
        target: "—",
      });
      rows.push({
        name: "7. the same runs, median of each run's ratio to the fixed-header run beside it (drift cancels)",
        ours: "—",
        baseline: "—",
        ratio: `${r.pairedRatio.toFixed(3)}×`,
        target: "—",
      });
    } else if (r.kind === "cold-refresh") {
      rows.push({
        name: `7. cold refresh, expired stored login (${r.afterRefresh ? "stored by a refresh" : "right after a login"}): IdP requests`,
        ours: `${r.idpRequests} (${r.discoveryRequests} discovery + ${r.tokenRequests} token)`,
        baseline: "—",
        // Endpoints are never read back from a store (issue 16): at most one discovery.
        target: "≤ 2 (≤ 1 discovery)",
        met: r.idpRequests <= 2 && r.discoveryRequests <= 1,
      });
    } else {
      rows.push({ name: `7. ${r.label}`, ours: r.value, baseline: "—", target: "—" });
    }
  }
}
if (wanted("8")) rows.push(...(await redisFleetRows()));
if (wanted("9")) rows.push(...(await dpopRows()));
if (wanted("10")) rows.push(...(await verifyRows()));

const machine = {
  node: process.version,
  cpus: `${cpus().length} × ${cpus()[0]?.model ?? "?"}`,
  date: new Date().toISOString(),
  seconds: Math.round((performance.now() - started) / 1000),
};
if (values.json) {
  process.stdout.write(`${JSON.stringify({ machine, rows }, null, 2)}\n`);
} else {
  const header: Row = { name: "row", ours: "connect-oidc", baseline: "baseline", ratio: "ratio", target: "target" };
  const cells = (r: Row) => [r.name, r.ours, r.baseline, r.ratio ?? "", r.target, r.met === undefined ? "" : r.met ? "met" : "MISSED"];
  const all = [header, ...rows].map(cells);
  const widths = all[0]!.map((_, i) => Math.max(...all.map((c) => c[i]!.length)));
  for (const c of all)
    console.log(
      c
        .map((x, i) => x.padEnd(widths[i]!))
        .join("  ")
        .trimEnd(),
    );
  console.log(`\n${machine.cpus}, Node ${machine.node}, ${machine.date}, ${machine.seconds} s`);
}
