/**
 * Cold start (issue 13): what a process that lives for one call pays for connect-oidc.
 *  (a) A fresh Node process with a valid stored login makes one unary call to a loopback
 *      connect-node server, against a process that reads the same token from the same store
 *      and sets it as a fixed header: median wall time of alternating runs, fileStore and
 *      (with a D-Bus session and gnome-keyring) keyringStore.
 *  (b) A fresh process whose stored token has expired: its requests to the identity
 *      provider (discovery and token endpoint), right after a login and after an earlier
 *      refresh. Both pay one discovery: endpoints are never read back from a store (issue 16).
 * The children run a plain-JavaScript copy of src/ (test/support/cold-build.ts) with plain
 * `node`, as a user's process would run the published package.
 *
 * Run alone: node --import tsx bench/cold-start.ts [runs]
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { fileStore } from "../src/node.js";
import type { StoredTokens } from "../src/types.js";
import { buildColdCopy, type ColdCopy, runColdChild } from "../test/support/cold-build.js";
import type { ColdChildConfig } from "../test/support/cold-client.js";
import { watchIdpRequests, type IdpRequests } from "../test/support/cold-requests.js";
import { storedLogin } from "../test/support/cold-login.js";
import { startIdp } from "../test/support/idp.js";
import { startPrivateKeyring } from "../test/support/keyring-session.js";
import { startServer } from "../test/support/server.js";

export type ColdStartRow =
  | {
      readonly kind: "cold-start";
      readonly label: string;
      readonly value: string;
      readonly store: "fileStore" | "keyringStore";
      readonly runs: number;
      /** Median wall time of a fresh process, spawn to exit (ms). */
      readonly connectOidcMs: number;
      readonly fixedHeaderMs: number;
      /** connectOidcMs / fixedHeaderMs. */
      readonly ratio: number;
      /** Median CPU time (user + system) of the same processes, ms, and its ratio: less moved by other load. */
      readonly connectOidcCpuMs: number;
      readonly fixedHeaderCpuMs: number;
      readonly cpuRatio: number;
      /** Median of the runs' own ratios (each connect-oidc run over the fixed-header run next to it): drift between runs cancels out. */
      readonly pairedRatio: number;
    }
  | { readonly kind: "skipped"; readonly label: string; readonly value: string }
  | {
      readonly kind: "cold-refresh";
      readonly label: string;
      readonly value: string;
      /** The login was stored by a refresh (not by a login) before. */
      readonly afterRefresh: boolean;
      readonly idpRequests: number;
      readonly discoveryRequests: number;
      readonly tokenRequests: number;
    };

export interface ColdStartOptions {
  /** Runs of each process per store (alternating). Default 20. */
  readonly runs?: number;
  /** Measure keyringStore too when a private D-Bus session with gnome-keyring can start. Default true. */
  readonly keyring?: boolean;
}

const HOUR = 3600_000;

export async function coldStartRows(options: ColdStartOptions = {}): Promise<ColdStartRow[]> {
  const runs = options.runs ?? 20;
  const rows: ColdStartRow[] = [];
  const folder = await mkdtemp(join(tmpdir(), "connect-oidc-cold-bench-"));
  const copy = await buildColdCopy("esm");
  const idp = await startIdp({ accessTokenTtl: 3600 });
  const server = await startServer({ idp, http2: false });
  const idpRequests = watchIdpRequests(idp.issuer);
  const tokenStats = () => idp.stats.tokenRequests;
  const base = { baseUrl: server.baseUrl, issuer: idp.issuer, clientId: idp.clientId };
  try {
    // (a) fileStore: a valid login.
    const file: ColdChildConfig = { ...base, store: { kind: "file", path: join(folder, "tokens.json") } };
    await seed(copy, file, await storedLogin(idp), process.env);
    rows.push(await sideBySide(copy, file, "fileStore", runs, process.env));

    // (a) keyringStore, in a private D-Bus session with gnome-keyring.
    const keyring = options.keyring === false ? "not asked for" : await startPrivateKeyring();
    if (typeof keyring === "string") {
      rows.push({ kind: "skipped", label: "cold start, keyringStore", value: `skipped: ${keyring}` });
    } else {
      try {
        const config: ColdChildConfig = { ...base, store: { kind: "keyring", service: "connect-oidc-bench", account: "cold" } };
        await seed(copy, config, await storedLogin(idp), keyring.env);
        rows.push(await sideBySide(copy, config, "keyringStore", runs, keyring.env));
      } finally {
        await keyring.stop();
      }
    }

    // (b) An expired stored token: right after a login, then as a refresh stored it.
    const expired: ColdChildConfig = { ...base, store: { kind: "file", path: join(folder, "expired.json") } };
    await seed(copy, expired, await storedLogin(idp, -2 * HOUR), process.env);
    rows.push(await coldRefresh(copy, expired, idpRequests, tokenStats, false));
    const store = fileStore(expired.store.kind === "file" ? expired.store.path : "");
    const refreshed = (await store.load()) as StoredTokens;
    await store.save(shiftedBack(refreshed, 2 * HOUR));
    rows.push(await coldRefresh(copy, expired, idpRequests, tokenStats, true));
  } finally {
    idpRequests.stop();
    await server.close();
    await idp.close();
    await copy.remove();
    await rm(folder, { recursive: true, force: true });
  }
  return rows;
}

function shiftedBack(tokens: StoredTokens, ms: number): StoredTokens {
  return { ...tokens, issuedAt: (tokens.issuedAt ?? Date.now()) - ms, expiresAt: (tokens.expiresAt ?? Date.now()) - ms };
}

async function seed(copy: ColdCopy, config: ColdChildConfig, tokens: StoredTokens, env: NodeJS.ProcessEnv): Promise<void> {
  await runChild(copy, "test/support/cold-seed.ts", { store: config.store, tokens }, env);
}

async function sideBySide(
  copy: ColdCopy,
  config: ColdChildConfig,
  store: "fileStore" | "keyringStore",
  runs: number,
  env: NodeJS.ProcessEnv,
): Promise<ColdStartRow> {
  const withLibrary = () => sample(copy, "test/support/cold-client.ts", config, env);
  const fixed = () => sample(copy, "test/support/cold-fixed.ts", config, env);
  // Warm the file system cache and the server's JWKS: not counted.
  await withLibrary();
  await fixed();
  const library: ColdSample[] = [];
  const baseline: ColdSample[] = [];
  for (let i = 0; i < runs; i += 1) {
    // Alternate which goes first, so drift (CPU frequency, caches) hits both alike.
    if (i % 2 === 0) {
      library.push(await withLibrary());
      baseline.push(await fixed());
    } else {
      baseline.push(await fixed());
      library.push(await withLibrary());
    }
  }
  const connectOidcMs = median(library.map((s) => s.ms));
  const fixedHeaderMs = median(baseline.map((s) => s.ms));
  const ratio = connectOidcMs / fixedHeaderMs;
  const pairedRatio = median(library.map((s, i) => s.ms / baseline[i]!.ms));
  const connectOidcCpuMs = median(library.map((s) => s.cpuMs));
  const fixedHeaderCpuMs = median(baseline.map((s) => s.cpuMs));
  return {
    kind: "cold-start",
    label: `cold start, ${store}: fresh process, one call (median of ${runs}, ms)`,
    value: `connect-oidc ${connectOidcMs.toFixed(0)} | fixed header ${fixedHeaderMs.toFixed(0)} | ${ratio.toFixed(3)}× (paired ${pairedRatio.toFixed(3)}×, CPU ${(connectOidcCpuMs / fixedHeaderCpuMs).toFixed(3)}×)`,
    store,
    runs,
    connectOidcMs,
    fixedHeaderMs,
    ratio,
    connectOidcCpuMs,
    fixedHeaderCpuMs,
    cpuRatio: connectOidcCpuMs / fixedHeaderCpuMs,
    pairedRatio,
  };
}

async function coldRefresh(
  copy: ColdCopy,
  config: ColdChildConfig,
  idp: IdpRequests,
  tokenStats: () => number,
  afterRefresh: boolean,
): Promise<ColdStartRow> {
  idp.reset();
  const tokenRequestsBefore = tokenStats();
  await runChild(copy, "test/support/cold-client.ts", config, process.env);
  const { discovery: discoveryRequests, token: tokenRequests } = idp;
  if (tokenRequests !== tokenStats() - tokenRequestsBefore) throw new Error("the IdP's stats and the request count disagree");
  return {
    kind: "cold-refresh",
    label: `cold refresh, expired stored token, ${afterRefresh ? "stored by a refresh" : "right after a login"}: IdP requests`,
    value: `${idp.seen.length} (discovery ${discoveryRequests}, token ${tokenRequests})`,
    afterRefresh,
    idpRequests: idp.seen.length,
    discoveryRequests,
    tokenRequests,
  };
}

interface ColdSample {
  readonly ms: number;
  readonly cpuMs: number;
}

async function sample(copy: ColdCopy, script: string, config: unknown, env: NodeJS.ProcessEnv): Promise<ColdSample> {
  const { ms, report } = await runColdChild(copy, script, config, { env });
  return { ms, cpuMs: report.cpuMs ?? Number.NaN };
}

async function runChild(copy: ColdCopy, script: string, config: unknown, env: NodeJS.ProcessEnv): Promise<number> {
  return (await runColdChild(copy, script, config, { env })).ms;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const runs = process.argv[2] === undefined ? undefined : Number(process.argv[2]);
  const rows = await coldStartRows(runs === undefined ? {} : { runs });
  const width = Math.max(...rows.map((r) => r.label.length));
  for (const row of rows) console.log(`${row.label.padEnd(width)}  ${row.value}`);
}
