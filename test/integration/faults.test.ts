/**
 * The fault suite's own cases (RELIABILITY.md maps every fault to its test, most of them
 * in the other suites): transport faults of the identity provider made for real (a stopped
 * server, a socket destroyed mid-answer, an answer cut short, a hang past the timeout),
 * token answers missing parts, clocks off and stepping, a suspended process, and callers
 * giving up together. Each asserts what a user would notice: a typed error, no crash, no
 * storm, no token in any error, and the login going on where it can.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { describe, it } from "node:test";
import { createClient } from "@connectrpc/connect";
import { create, toBinary } from "@bufbuild/protobuf";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { EchoService, SayResponseSchema } from "../../gen/connectoidc/test/v1/echo_pb.js";
import {
  createAuthInterceptor,
  createTokenManager,
  ProviderConfigurationError,
  ReauthRequiredError,
  TokenRefreshError,
} from "../../src/index.js";
import { createFileLock } from "../../src/node.js";
import { startIdp } from "../support/idp.js";
import { managerSuite } from "../support/manager-suite.js";
import { createManualClock } from "../support/manual-clock.js";
import { startServer } from "../support/server.js";

const HOUR = 3600_000;
const MIN = 60_000;

describe("faults: the identity provider's transport", () => {
  const s = managerSuite();
  const { leaks, setup, get, rejects, events } = s;

  it("connection refused (the IdP stopped): transient, the valid token still served, no re-login", async () => {
    const own = await startIdp({ accessTokenTtl: 3600 });
    const clock = createManualClock();
    const seen: typeof events = [];
    const m = s.keep(
      createTokenManager({
        issuer: own.issuer,
        clientId: own.clientId,
        allowInsecureRequests: true,
        clock,
        onEvent: (e) => {
          seen.push(e);
          events.push(e);
        },
      }),
    );
    const login = await own.login();
    leaks.remember(login.access_token, login.refresh_token);
    await m.setTokens(login);
    accepted(m, await get(m));
    const fresh = await get(m, { rejected: login.access_token }); // discovery + one refresh
    accepted(m, fresh);
    await own.close();
    const error = await rejects(m.getAccessToken({ rejected: fresh }));
    assert.ok(error instanceof TokenRefreshError, String(error));
    assert.match((error as Error).message, /could not be reached/);
    assert.ok(!seen.some((e) => e.type === "reauth-required"));
  });

  it("a socket destroyed mid-answer (refresh token consumed, answer lost): typed errors, then one re-login, no storm", async () => {
    const { manager, clock, seen, login } = await setup();
    s.idp.setTokenTransportFault("reset-mid-body");
    const first = await rejects(manager.getAccessToken({ rejected: login.access_token }));
    assert.ok(first instanceof TokenRefreshError, String(first));
    s.idp.setTokenTransportFault(undefined);
    // The next attempt presents the consumed refresh token: a strict provider revokes the login.
    const before = s.idp.stats.tokenRequests;
    for (let i = 0; i < 30; i += 1) {
      await clock.advance(2000);
      const e = await rejects(manager.getAccessToken());
      assert.ok(e instanceof TokenRefreshError || e instanceof ReauthRequiredError, String(e));
    }
    assert.ok(s.idp.stats.tokenRequests - before <= 2, `requests after the lost answer: ${s.idp.stats.tokenRequests - before}`);
    assert.equal(seen.filter((e) => e.type === "reauth-required").length, 1);
  });

  it("an answer cut short (malformed JSON): a typed error naming no token, no crash", async () => {
    const { manager, seen, login } = await setup();
    s.idp.setTokenTransportFault("malformed-json");
    const error = await rejects(manager.getAccessToken({ rejected: login.access_token }));
    assert.ok(error instanceof TokenRefreshError, String(error));
    leaks.assertClean(error);
    for (const e of seen) leaks.assertClean(e);
  });

  it("an IdP that hangs past timeoutMs: the wait ends at the timeout, and the next attempt works", async () => {
    const { manager, clock, login } = await setup({ timeoutMs: 500 });
    s.idp.setTokenLatency(3000); // "before": the request is dropped unprocessed when the client gives up
    const t0 = performance.now();
    const error = await rejects(manager.getAccessToken({ rejected: login.access_token }));
    const waited = performance.now() - t0;
    assert.ok(error instanceof TokenRefreshError, String(error));
    assert.match((error as Error).message, /did not answer in time/);
    assert.ok(waited < 2500, `waited ${Math.round(waited)} ms`);
    s.idp.setTokenLatency(0);
    await clock.advance(1500);
    const invalid = s.idp.stats.invalidGrant;
    assert.notEqual(await get(manager, { rejected: login.access_token }), login.access_token);
    assert.equal(s.idp.stats.invalidGrant, invalid);
  });

  it("invalid_client (401 with an OAuth error) before any success: a configuration failure, one misconfigured, no re-login", async () => {
    const { manager, seen, login } = await setup();
    s.idp.setTokenOutage(401, { body: { error: "invalid_client" }, headers: { "content-type": "application/json" } });
    const error = await rejects(manager.getAccessToken({ rejected: login.access_token }));
    assert.ok(error instanceof ProviderConfigurationError, String(error));
    assert.match(error.message, /\(invalid_client\): check `clientId`/);
    assert.equal(seen.filter((e) => e.type === "misconfigured").length, 1);
    assert.ok(!seen.some((e) => e.type === "reauth-required"));
  });
});

describe("faults: token answers missing parts", () => {
  const s = managerSuite();
  const { setup, get, rejects } = s;

  for (const [what, change] of [
    ["without expires_in", ({ expires_in: _gone, ...body }: Record<string, unknown>) => body],
    ["with expires_in 0", (body: Record<string, unknown>) => ({ ...body, expires_in: 0 })],
  ] as const) {
    it(`an answer ${what}: the token is taken to live 5 minutes`, async () => {
      const { manager, clock, seen, login } = await setup();
      s.idp.rewriteTokenResponse(change);
      const sent = clock.now();
      await get(manager, { rejected: login.access_token });
      const refreshed = seen.find((e) => e.type === "refreshed");
      assert.ok(refreshed?.type === "refreshed");
      assert.equal(refreshed.expiresAt - sent, 5 * MIN);
    });
  }

  it("an answer without access_token: a typed error; the rotated refresh token is kept and used next", async () => {
    const { manager, clock, login } = await setup();
    s.idp.rewriteTokenResponse(({ access_token: _gone, ...body }) => body);
    assert.ok((await rejects(manager.getAccessToken({ rejected: login.access_token }))) instanceof TokenRefreshError);
    s.idp.rewriteTokenResponse(undefined);
    await clock.advance(1500);
    const invalid = s.idp.stats.invalidGrant;
    assert.notEqual(await get(manager, { rejected: login.access_token }), login.access_token);
    assert.equal(s.idp.stats.invalidGrant, invalid, "the consumed refresh token was not presented");
  });
});

describe("faults: time", () => {
  const s = managerSuite();
  const { leaks, setup, get } = s;

  for (const [name, offset] of [
    ["an hour ahead", HOUR],
    ["an hour behind", -HOUR],
  ] as const) {
    it(`a client clock ${name} of the IdP and server: calls succeed, the refresh comes on the local schedule`, async () => {
      const server = await startServer({ idp: s.idp, http2: false });
      try {
        const { manager, clock, seen } = await setup({ clock: createManualClock(Date.now() + offset) });
        const client = createClient(
          EchoService,
          createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "1.1", interceptors: [createAuthInterceptor(manager)] }),
        );
        await client.say({ text: "now" });
        await clock.advance(46 * MIN); // inside the local window: a background refresh
        await waitFor(() => seen.some((e) => e.type === "refreshed"));
        leaks.remember(await get(manager));
        assert.equal((await client.say({ text: "later" })).text, "later");
        assert.deepEqual(
          seen.filter((e) => e.type === "refreshed").map((e) => e.type === "refreshed" && e.reason),
          ["proactive"],
        );
      } finally {
        await server.close();
      }
    });
  }

  it("a wall-clock step during a refresh: the call gets a token, at most one more refresh, no invalid_grant", async () => {
    const { manager, clock, login } = await setup();
    s.idp.setTokenLatency(300);
    const before = s.idp.stats.byGrantType.refresh_token;
    const pending = manager.getAccessToken({ rejected: login.access_token });
    await new Promise((r) => setTimeout(r, 100));
    await clock.stepWall(2 * HOUR); // the token being fetched looks expired when it arrives
    leaks.remember(await pending);
    s.idp.setTokenLatency(0);
    leaks.remember(await get(manager));
    assert.ok(s.idp.stats.byGrantType.refresh_token - before <= 2);
    assert.equal(s.idp.stats.invalidGrant, 0);
  });

  it("a process suspended past expiry (wall clock moved, timers late): the next call refreshes once and succeeds", async () => {
    const { manager, clock, seen, login } = await setup();
    await clock.stepWall(3 * HOUR); // no timer fired meanwhile
    const token = await get(manager);
    assert.notEqual(token, login.access_token);
    assert.deepEqual(
      seen.filter((e) => e.type === "refreshed").map((e) => e.type === "refreshed" && e.reason),
      ["expired"],
    );
  });
});

describe("faults: servers", () => {
  const s = managerSuite();
  const { setup, leaks } = s;

  it("a gRPC server answering trailers-only grpc-status 16 (as grpc-js does before any message): one refresh, the call re-sent and answered", async () => {
    const seenTokens: string[] = [];
    // A real HTTP/2 server speaking gRPC by hand: trailers-only refusal first, then a proper answer.
    const server = http2.createServer();
    const sessions = new Set<http2.ServerHttp2Session>();
    server.on("session", (session) => sessions.add(session));
    server.on("stream", (stream, headers) => {
      seenTokens.push(String(headers.authorization ?? ""));
      stream.on("data", () => {});
      stream.on("end", () => {
        if (seenTokens.length === 1) {
          stream.respond(
            { ":status": 200, "content-type": "application/grpc", "grpc-status": "16", "grpc-message": "token revoked" },
            { endStream: true },
          );
          return;
        }
        const message = toBinary(SayResponseSchema, create(SayResponseSchema, { text: "answered" }));
        const frame = new Uint8Array(5 + message.length);
        new DataView(frame.buffer).setUint32(1, message.length);
        frame.set(message, 5);
        stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
        stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
        stream.end(frame);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const { manager, login } = await setup();
      const { port } = server.address() as AddressInfo;
      const client = createClient(
        EchoService,
        createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}`, interceptors: [createAuthInterceptor(manager)] }),
      );
      const before = s.idp.stats.byGrantType.refresh_token;
      assert.equal((await client.say({ text: "x" })).text, "answered");
      assert.equal(seenTokens.length, 2);
      assert.equal(seenTokens[0], `Bearer ${login.access_token}`);
      assert.notEqual(seenTokens[1], seenTokens[0]);
      leaks.remember(seenTokens[1]?.slice("Bearer ".length));
      assert.equal(s.idp.stats.byGrantType.refresh_token - before, 1);
    } finally {
      for (const session of sessions) session.destroy(); // the client keeps its session open
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe("faults: huge durations", () => {
  const s = managerSuite();

  it("timeoutMs: 3e9 (beyond setTimeout's range): refreshes work, and nothing is printed", async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on("warning", onWarning);
    try {
      const { manager, login } = await s.setup({ timeoutMs: 3e9 });
      assert.notEqual(await s.get(manager, { rejected: login.access_token }), login.access_token);
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(warnings, []);
    } finally {
      process.off("warning", onWarning);
    }
  });

  it("a file lock with timeoutMs: Infinity waits for the holder instead of giving up at once", async () => {
    const dir = await mkdtemp(join(tmpdir(), "connect-oidc-faults-lock-"));
    try {
      const lock = createFileLock(join(dir, "x.lock"), { timeoutMs: Number.POSITIVE_INFINITY });
      let release!: () => void;
      const held = lock.lock(() => new Promise<void>((r) => (release = r)));
      await new Promise((r) => setTimeout(r, 50));
      const waiting = lock.lock(async () => "got it");
      setTimeout(() => release(), 300);
      assert.equal(await waiting, "got it");
      await held;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("faults: callers", () => {
  const s = managerSuite();
  const { setup, get, rejects } = s;

  it("100 callers waiting for a slow refresh abort together: each ends at once; the refresh goes on and serves the next call", async () => {
    const { manager, clock, login } = await setup();
    await clock.stepWall(2 * HOUR); // expired: callers must wait
    s.idp.setTokenLatency(400);
    const before = s.idp.stats.byGrantType.refresh_token;
    const controllers = Array.from({ length: 100 }, () => new AbortController());
    const waits = controllers.map((c) => rejects(manager.getAccessToken({ signal: c.signal })));
    await new Promise((r) => setTimeout(r, 50));
    const t0 = performance.now();
    for (const c of controllers) c.abort(new Error("caller gave up"));
    const reasons = await Promise.all(waits);
    assert.ok(performance.now() - t0 < 200, "every wait ended at once");
    assert.ok(reasons.every((r) => (r as Error).message === "caller gave up"));
    s.idp.setTokenLatency(0);
    assert.notEqual(await get(manager), login.access_token);
    assert.equal(s.idp.stats.byGrantType.refresh_token - before, 1, "one refresh, finished for the next caller");
  });
});

function accepted(m: { accepted?: (t: string) => void }, token: string) {
  m.accepted?.(token);
}

async function waitFor(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}
