/**
 * The demo as a user runs it: a child process, its summary, its exit code — and its
 * whole output scanned for token material. The demo writes every token it handled
 * (login, every refresh, every Authorization header) to a file given by --record-tokens;
 * no piece of any of them may appear in what it printed.
 *
 * 35 s with 10 s tokens: a proactive refresh comes 6.5 s into a token's life (25 % of
 * the lifetime before the 1 s safety margin), so about 5 happen, and the revocation at
 * 40 % (14 s, then the next refresh, then 1 s) lands by about 21 s with a heartbeat every
 * second after it: ≥ 3 proactive and ≥ 1 reactive hold with room to spare.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, createRouterTransport } from "@connectrpc/connect";
import { AgentSessionService, Decision } from "../../gen/agent/v1/session_pb.js";
import { runEvents } from "../../examples/events.js";
import { runExample } from "../support/run-example.js";

const runDemo = (args: readonly string[]) => runExample("demo", args);

/** The numbers of one summary row, by name: "sent 35, failed 0" → { sent: 35, failed: 0 }. */
function row(stdout: string, label: string): Record<string, number> {
  const line = stdout.split("\n").find((l) => l.trimStart().startsWith(`${label} `));
  assert.ok(line, `summary row "${label}" missing:\n${stdout}`);
  const numbers: Record<string, number> = {};
  for (const m of line.slice(line.indexOf(label) + label.length).matchAll(/([a-z]+) (\d+)/g)) numbers[m[1]!] ??= Number(m[2]);
  const leading = /^\s*(\d+)/.exec(line.slice(line.indexOf(label) + label.length));
  if (leading) numbers.count = Number(leading[1]);
  return numbers;
}

/**
 * The leak scan: every secret the demo recorded (tokens; `jwk-d:` lines: a DPoP private key's
 * `d`), and every 12-character piece of one, must be absent from its output; so must anything
 * shaped like a JWT or its JSON header. Returns the secrets.
 */
async function assertNothingPrinted(output: string, recordFile: string): Promise<string[]> {
  const secrets = (await readFile(recordFile, "utf8"))
    .split("\n")
    .filter(Boolean)
    .map((line) => line.replace(/^jwk-d:/, ""));
  for (const secret of secrets) {
    for (let i = 0; i + 12 <= secret.length; i++) {
      const piece = secret.slice(i, i + 12);
      if (piece.includes(".")) continue; // a JWT's dots join segments that are checked on their own
      assert.ok(!output.includes(piece), `the demo printed a piece of a secret (${secret.length} chars, offset ${i})`);
    }
  }
  assert.doesNotMatch(output, /eyJ[A-Za-z0-9_-]{8,}/);
  return secrets;
}

// The runs are child processes with an IdP and server each, mostly waiting: side by side.
describe("npm run demo", { concurrency: true }, () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "connect-oidc-demo-test-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("runs 35 s across several token lifetimes: nothing fails, ≥ 3 proactive refreshes, ≥ 1 reactive retry, no token printed", {
    timeout: 120_000,
  }, async (t) => {
    const tokenFile = join(dir, "tokens.txt");
    const run = await runDemo(["--duration", "35s", "--record-tokens", tokenFile]);
    const output = `${run.stdout}\n${run.stderr}`;
    assert.equal(run.code, 0, `demo exited ${run.code} after ${run.ms} ms:\n${output}`);
    assert.match(run.stdout, /^PASS: /m);

    const heartbeats = row(run.stdout, "heartbeats");
    assert.equal(heartbeats.failed, 0);
    assert.ok(heartbeats.sent! >= 30, `heartbeats: ${JSON.stringify(heartbeats)}`);
    const events = row(run.stdout, "events");
    assert.equal(events.lost, 0);
    assert.equal(events.retried, 0);
    assert.ok(events.sent! >= 100, `events: ${JSON.stringify(events)}`);
    assert.equal(events.stored, events.sent, "the server stored exactly the events the client counted as sent");
    const refreshes = row(run.stdout, "refreshes");
    assert.ok(refreshes.proactive! >= 3, `refreshes: ${JSON.stringify(refreshes)}`);
    assert.ok(refreshes.rejected! >= 1, `refreshes: ${JSON.stringify(refreshes)}`);
    assert.equal(refreshes.expired, 0);
    assert.equal(refreshes.failed, 0);
    assert.ok(row(run.stdout, "reactive retries").count! >= 1);
    const refusals = row(run.stdout, "server refusals");
    assert.ok(refusals.revoked! >= 1);
    assert.equal(refusals.expired, 0, "no call went out with an expired token");
    assert.equal(refusals.invalid, 0);

    assert.match(run.stderr, /✓ Token refreshed \(proactive, expires \d\d:\d\d:\d\d\)/);
    assert.match(run.stderr, /✓ Token refreshed \(rejected, /);
    assert.match(run.stderr, /The server revoked the current access token/);

    const tokens = await assertNothingPrinted(output, tokenFile);
    const jwts = tokens.filter((t) => t.split(".").length === 3);
    assert.ok(jwts.length >= 6, `only ${jwts.length} access tokens recorded`);
    assert.ok(tokens.length - jwts.length >= 3, "refresh tokens recorded too");

    t.diagnostic(`the 35 s demo took ${(run.ms / 1000).toFixed(1)} s; ${tokens.length} tokens scanned for`);
  });

  it("--dpop: DPoP-bound tokens, a proof on every call, the server's nonce rotating every 3 s: nothing fails, no token or private key printed", {
    timeout: 120_000,
  }, async (t) => {
    const tokenFile = join(dir, "dpop-tokens.txt");
    const run = await runDemo([
      "--dpop",
      "--duration",
      "25s",
      "--token-ttl",
      "6s",
      "--dpop-nonce-every",
      "3s",
      "--http2",
      "--record-tokens",
      tokenFile,
    ]);
    const output = `${run.stdout}\n${run.stderr}`;
    assert.equal(run.code, 0, `demo exited ${run.code} after ${run.ms} ms:\n${output}`);
    assert.match(run.stdout, /^PASS: /m);
    assert.match(run.stderr, /DPoP-bound, nonces required/);
    assert.equal(row(run.stdout, "heartbeats").failed, 0);
    assert.equal(row(run.stdout, "events").lost, 0);
    assert.equal(row(run.stdout, "events").retried, 0);
    const refreshes = row(run.stdout, "refreshes");
    assert.ok(refreshes.proactive! >= 3, `refreshes: ${JSON.stringify(refreshes)}`);
    assert.equal(refreshes.failed, 0);
    assert.ok(row(run.stdout, "reactive retries").count! >= 1, "the revocation was met with a new token");
    const dpop = row(run.stdout, "DPoP");
    assert.ok(dpop.accepted! >= 50, `DPoP: ${JSON.stringify(dpop)}`);
    assert.equal(dpop.refused, 0, "no proof the client made was refused");
    // Each client learns the nonce on its first call (2), then follows the rotation from every answer.
    assert.ok(dpop.retries! <= 4, `nonce retries: ${JSON.stringify(dpop)}`);
    const refusals = row(run.stdout, "server refusals");
    assert.equal(refusals.expired, 0);
    assert.equal(refusals.invalid, 0);
    assert.equal(refusals.proof, 0);
    assert.equal(refusals.missing, 0, "never a bearer (or no) token");

    const recorded = await assertNothingPrinted(output, tokenFile);
    assert.match(await readFile(tokenFile, "utf8"), /^jwk-d:[A-Za-z0-9_-]{40,}$/m, "the private key was recorded for the scan");
    t.diagnostic(`the 25 s --dpop demo took ${(run.ms / 1000).toFixed(1)} s; ${recorded.length} secrets scanned for`);
  });

  it("exits 1 and says why when the run is too short to show the refreshes", { timeout: 60_000 }, async () => {
    const run = await runDemo(["--duration", "4s"]);
    assert.equal(run.code, 1, `${run.stdout}\n${run.stderr}`);
    assert.match(run.stdout, /^FAIL: .*proactive refreshes \(need ≥ 3/m);
    assert.match(run.stdout, /no reactive retry .*\(need ≥ 1\)/);
    assert.equal(row(run.stdout, "heartbeats").failed, 0);
  });
});

describe("event client (examples/events.ts)", () => {
  it("re-sends a failed event with the same client_event_id, and counts one lost only after the bound", async () => {
    const seen: string[] = [];
    let failuresLeft = 2;
    const transport = createRouterTransport(({ service }) =>
      service(AgentSessionService, {
        createSession: () => ({ sessionId: "s1" }),
        heartbeat: () => ({}),
        endSession: () => ({}),
        ingestEvent(req) {
          seen.push(`${req.hookEventName}:${req.clientEventId}`);
          if (req.toolName === "Down") throw new ConnectError("down for good", Code.Unavailable);
          if (failuresLeft-- > 0) throw new ConnectError("flaky", Code.Unavailable);
          return { eventId: `e-${req.clientEventId}`, decision: Decision.ALLOW };
        },
      }),
    );
    const lines = [
      JSON.stringify({ hook_event_name: "PreToolUse", tool_name: "Bash", tool_input: { command: "ls" }, id: "a" }),
      "not json",
      JSON.stringify({ hook_event_name: "PreToolUse", tool_name: "Down", id: "b" }),
      JSON.stringify({ hook_event_name: "Stop", id: "c" }),
    ];
    const log: string[] = [];
    const summary = await runEvents({
      transport,
      source: (async function* () {
        yield* lines;
      })(),
      retry: { maxAttempts: 3, baseMs: 1, maxMs: 2 },
      log: (line) => log.push(line),
    });
    assert.deepEqual(seen, ["PreToolUse:a", "PreToolUse:a", "PreToolUse:a", "PreToolUse:b", "PreToolUse:b", "PreToolUse:b", "Stop:c"]);
    assert.equal(summary.read, 4);
    assert.equal(summary.sent, 2);
    assert.equal(summary.retried, 1);
    assert.equal(summary.failedAttempts, 5);
    assert.equal(summary.malformed, 1);
    assert.equal(summary.lost, 1);
    assert.deepEqual(
      summary.lostEvents.map((e) => [e.line, e.clientEventId]),
      [[3, "b"]],
    );
    assert.ok(
      log.some((l) => l.includes("Event 3 (PreToolUse Down) LOST") && l.includes("gave up after 3 attempts")),
      log.join("\n"),
    );
    assert.ok(log.some((l) => l.includes("Line 2 skipped: not JSON")));
  });
});
