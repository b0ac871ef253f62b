/**
 * The token manager's rules without an identity provider: the transition table
 * (token/state.ts) and the decision for callers and the timer (token/decision.ts),
 * both pure functions, table-driven.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ProviderConfigurationError, ReauthRequiredError, TokenManagerClosedError, TokenRefreshError } from "../../src/errors.js";
import { decide, type Now, type Settings, serveUntil, wakeAt } from "../../src/token/decision.js";
import { entryEvents, type Flight, type Input, type Login, newLogin, type State, transition } from "../../src/token/state.js";
import type { StoredTokens } from "../../src/types.js";

const MIN = 60_000;
const HOUR = 60 * MIN;
const T0 = 1_700_000_000_000; // wall clock at login

const tokens = (n: number, extra: Partial<StoredTokens> = {}): StoredTokens => ({
  version: 1,
  issuer: "https://id.example",
  clientId: "cli",
  accessToken: `access-${n}`,
  refreshToken: `refresh-${n}`,
  issuedAt: T0,
  expiresAt: T0 + HOUR,
  ...extra,
});
const login = (extra: Partial<Login> = {}): Login => ({ ...newLogin(tokens(1), false), ...extra });
const flight = (reason: Flight["reason"] = "proactive"): Flight => ({
  reason,
  done: Promise.resolve(),
  grant: "refresh_token",
  startedAt: 0,
});
const refreshError = new TokenRefreshError("down");
const reauthError = new ReauthRequiredError("dead");

const ready = (l: Login = login()): State => ({ kind: "ready", login: l });
const refreshing = (f: Flight, l: Login | undefined = login(), failures = 0): State => ({
  kind: "refreshing",
  login: l,
  flight: f,
  failures,
});
const backingOff = (l: Login | undefined = login(), retryAt = 5000, lastAttemptAt = 1000): State => ({
  kind: "backing-off",
  login: l,
  failures: 2,
  retryAt,
  demandRetryAt: lastAttemptAt + 1000,
  error: refreshError,
});
const reauth = (checkedAt = 0, l: Login | undefined = login()): State => ({
  kind: "reauth-required",
  login: l,
  inStore: l?.inStore,
  error: reauthError,
  terminal: true,
  checkedAt,
});

const configError = new ProviderConfigurationError("client", "the identity provider refused this client's credentials (invalid_client)");
const misconfigured = (l: Login | undefined = login()): State => ({ kind: "misconfigured", login: l, error: configError });

describe("transition table", () => {
  const f = flight();
  const other = flight();
  const outcome = { tokens: tokens(2), inStore: tokens(2), adopted: false };
  const cases: [string, State, Input, string | ((s: State) => void)][] = [
    ["loading + loaded(nothing) → empty", { kind: "loading" }, { type: "loaded", stored: undefined }, "empty"],
    [
      "loading + loaded(login) → ready, loaded at start",
      { kind: "loading" },
      { type: "loaded", stored: tokens(1) },
      (s) => assert.ok(s.kind === "ready" && s.login.loadedAtStart),
    ],
    ["ready + loaded → ready (a login set meanwhile wins)", ready(), { type: "loaded", stored: tokens(9) }, (s) => assert.equal(s, s)],
    ["ready + refresh-started → refreshing", ready(), { type: "refresh-started", flight: f }, "refreshing"],
    ["empty + refresh-started → refreshing (client credentials)", { kind: "empty" }, { type: "refresh-started", flight: f }, "refreshing"],
    ["reauth + refresh-started → reauth (no refresh there)", reauth(), { type: "refresh-started", flight: f }, "reauth-required"],
    [
      "backing-off + refresh-started → refreshing, failures kept",
      backingOff(),
      { type: "refresh-started", flight: f },
      (s) => assert.ok(s.kind === "refreshing" && s.failures === 2),
    ],
    [
      "refreshing + its result → ready with the new tokens",
      refreshing(f),
      { type: "refresh-done", flight: f, outcome, at: 10 },
      (s) => assert.ok(s.kind === "ready" && s.login.tokens.accessToken === "access-2"),
    ],
    [
      "refreshing + another flight's result → dropped",
      refreshing(f),
      { type: "refresh-done", flight: other, outcome, at: 10 },
      "refreshing",
    ],
    ["ready + a late result → dropped (the login was replaced)", ready(), { type: "refresh-done", flight: f, outcome, at: 10 }, "ready"],
    ["empty + a late result → dropped (signed out)", { kind: "empty" }, { type: "refresh-done", flight: f, outcome, at: 10 }, "empty"],
    ["closed + a late result → closed", { kind: "closed" }, { type: "refresh-done", flight: f, outcome, at: 10 }, "closed"],
    [
      "refreshing + failed → backing-off, failures counted",
      refreshing(f, login(), 1),
      { type: "refresh-failed", flight: f, error: refreshError, at: 10, retryAt: 2010, demandRetryAt: 1010 },
      (s) => assert.ok(s.kind === "backing-off" && s.failures === 2 && s.retryAt === 2010 && s.demandRetryAt === 1010),
    ],
    [
      "refreshing + failed with a kept refresh token → backing-off holding it",
      refreshing(f),
      {
        type: "refresh-failed",
        flight: f,
        error: refreshError,
        at: 10,
        retryAt: 2010,
        demandRetryAt: 1010,
        kept: { tokens: tokens(1, { refreshToken: "refresh-rotated" }), inStore: undefined, adopted: false },
      },
      (s) => assert.ok(s.kind === "backing-off" && s.login?.tokens.refreshToken === "refresh-rotated"),
    ],
    [
      "refreshing + terminal → reauth-required",
      refreshing(f),
      { type: "reauth", flight: f, error: reauthError, terminal: true, at: 10 },
      (s) => assert.ok(s.kind === "reauth-required" && s.terminal && s.checkedAt === 10),
    ],
    [
      "refreshing + another flight's terminal → dropped",
      refreshing(f),
      { type: "reauth", flight: other, error: reauthError, terminal: true, at: 10 },
      "refreshing",
    ],
    [
      "empty + reauth (no login) → reauth-required",
      { kind: "empty" },
      { type: "reauth", error: reauthError, terminal: false, at: 10 },
      "reauth-required",
    ],
    ["any + replaced(login) → ready", reauth(), { type: "replaced", tokens: tokens(5) }, "ready"],
    ["refreshing + replaced(nothing) → empty (signOut)", refreshing(f), { type: "replaced", tokens: undefined }, "empty"],
    ["refreshing + closed → closed", refreshing(f), { type: "closed" }, "closed"],
    ["closed + replaced → closed", { kind: "closed" }, { type: "replaced", tokens: tokens(5) }, "closed"],
    [
      "ready + refused(current) → refused",
      ready(),
      { type: "refused", token: "access-1" },
      (s) => assert.ok(s.kind === "ready" && s.login.refused),
    ],
    [
      "ready + refused(an old token) → unchanged",
      ready(),
      { type: "refused", token: "access-0" },
      (s) => assert.ok(s.kind === "ready" && !s.login.refused),
    ],
    [
      "ready + accepted(current) → accepted, forced count reset",
      ready(login({ unacceptedForced: 3 })),
      { type: "accepted", token: "access-1" },
      (s) => assert.ok(s.kind === "ready" && s.login.accepted && s.login.unacceptedForced === 0),
    ],
    [
      "reauth + rechecked(another login) → ready, adopted",
      reauth(),
      { type: "rechecked", stored: tokens(7), at: 2000, wallNow: T0 },
      (s) => assert.ok(s.kind === "ready" && s.outcome?.adopted === true),
    ],
    [
      "reauth + rechecked(the dead login, refresh token removed) → reauth, checked",
      reauth(),
      { type: "rechecked", stored: tokens(1, { refreshToken: undefined }), at: 2000, wallNow: T0 },
      (s) => assert.ok(s.kind === "reauth-required" && s.checkedAt === 2000),
    ],
    [
      "refreshing + misconfigured (its flight) → misconfigured, the login kept",
      refreshing(f),
      { type: "misconfigured", flight: f, error: configError },
      (s) => assert.ok(s.kind === "misconfigured" && s.error === configError && s.login?.tokens.accessToken === "access-1"),
    ],
    [
      "refreshing + misconfigured (another flight) → unchanged",
      refreshing(f),
      { type: "misconfigured", flight: other, error: configError },
      "refreshing",
    ],
    [
      "misconfigured + refresh-started → misconfigured (no refresh there)",
      misconfigured(),
      { type: "refresh-started", flight: f },
      "misconfigured",
    ],
    [
      "misconfigured + rechecked → misconfigured (another login does not fix the options)",
      misconfigured(),
      { type: "rechecked", stored: tokens(7), at: 2000, wallNow: T0 },
      "misconfigured",
    ],
    ["misconfigured + replaced (setTokens) → ready", misconfigured(), { type: "replaced", tokens: tokens(3) }, "ready"],
    ["misconfigured + replaced (signOut) → empty", misconfigured(), { type: "replaced", tokens: undefined }, "empty"],
    ["misconfigured + closed → closed", misconfigured(), { type: "closed" }, "closed"],
  ];
  for (const [name, from, input, expected] of cases) {
    it(name, () => {
      const to = transition(from, input);
      if (typeof expected === "string") assert.equal(to.kind, expected);
      else expected(to);
    });
  }

  it("forced refreshes count up while no token is accepted, and restart after an accepted one", () => {
    const f1 = flight("rejected");
    const s1 = transition(refreshing(f1, login({ refused: true })), { type: "refresh-done", flight: f1, outcome, at: 100 });
    assert.ok(s1.kind === "ready" && s1.login.unacceptedForced === 1 && s1.login.lastForcedAt === 100);
    const f2 = flight("rejected");
    const s2 = transition(refreshing(f2, { ...s1.login, refused: true }), { type: "refresh-done", flight: f2, outcome, at: 200 });
    assert.ok(s2.kind === "ready" && s2.login.unacceptedForced === 2);
    const f3 = flight("rejected");
    const s3 = transition(refreshing(f3, { ...s2.login, accepted: true, refused: true }), {
      type: "refresh-done",
      flight: f3,
      outcome,
      at: 300,
    });
    assert.ok(s3.kind === "ready" && s3.login.unacceptedForced === 1, "a revocation of an accepted token starts anew");
  });

  it("entry events: refreshed / adopted on a result, refresh-failed on backing off, reauth-required once; the first ends the refresh", () => {
    const f1 = flight("expired");
    const done = transition(refreshing(f1), { type: "refresh-done", flight: f1, outcome, at: 1 });
    assert.deepEqual(entryEvents(refreshing(f1), done, T0, 40), [
      {
        type: "refreshed",
        reason: "expired",
        expiresAt: T0 + HOUR,
        refresh: { reason: "expired", grant: "refresh_token", durationMs: 40 },
      },
    ]);
    const failed = transition(refreshing(f1), {
      type: "refresh-failed",
      flight: f1,
      error: refreshError,
      at: 0,
      retryAt: 1500,
      demandRetryAt: 1000,
    });
    assert.deepEqual(entryEvents(refreshing(f1), failed, T0, 0), [
      {
        type: "refresh-failed",
        error: refreshError,
        retryAt: T0 + 1500,
        terminal: false,
        expiresAt: T0 + HOUR,
        refresh: { reason: "expired", grant: "refresh_token", durationMs: 0 },
      },
    ]);
    const dead = transition(refreshing(f1), { type: "reauth", flight: f1, error: reauthError, terminal: true, at: 0 });
    assert.deepEqual(
      entryEvents(refreshing(f1), dead, T0, 0).map((e) => e.type),
      ["refresh-failed", "reauth-required"],
    );
    assert.deepEqual(entryEvents(dead, transition(dead, { type: "rechecked", stored: undefined, at: 5, wallNow: T0 }), T0, 0), []);
    assert.deepEqual(entryEvents(done, transition(done, { type: "accepted", token: "access-2" }), T0, 0), [], "a report announces nothing");
    const wrong = transition(refreshing(f1), { type: "misconfigured", flight: f1, error: configError });
    assert.deepEqual(entryEvents(refreshing(f1), wrong, T0, 0), [
      { type: "refresh-failed", error: configError, terminal: true, refresh: { reason: "expired", grant: "refresh_token", durationMs: 0 } },
      { type: "misconfigured", error: configError },
    ]);
  });
});

describe("decision table", () => {
  const settings: Settings = {
    grant: "refresh_token",
    refreshWindowMs: 15 * MIN,
    clientId: "cli",
    issuer: "https://id.example",
    loginExpiringMs: 24 * HOUR,
  };
  const at = (wallAfterLogin: number, monotonic = 10_000): Now => ({ wall: T0 + wallAfterLogin, monotonic });
  const f = flight();
  const cases: [string, State, Now, boolean, string, Partial<Settings>?][] = [
    ["fresh token → serve", ready(), at(10 * MIN), false, "serve"],
    ["in the window → serve and refresh in the background", ready(), at(50 * MIN), false, "serve-and-refresh"],
    ["in the window, timer → refresh", ready(), at(50 * MIN), true, "refresh:proactive"],
    ["fresh token, timer → idle", ready(), at(10 * MIN), true, "idle"],
    ["expired → refresh and wait", ready(), at(2 * HOUR), false, "refresh:expired"],
    ["expired, loaded at start → startup", ready(login({ loadedAtStart: true })), at(2 * HOUR), false, "refresh:startup"],
    ["refused, never a forced one → refresh at once", ready(login({ refused: true })), at(MIN), false, "refresh:rejected"],
    [
      "refused again within the pause, never accepted → serve it (the server says no, the IdP is spared)",
      ready(login({ refused: true, unacceptedForced: 3, lastForcedAt: 9000 })),
      at(MIN, 10_000),
      false,
      "serve",
    ],
    [
      "refused after the pause → refresh",
      ready(login({ refused: true, unacceptedForced: 3, lastForcedAt: 1000 })),
      at(MIN, 10_000),
      false,
      "refresh:rejected",
    ],
    [
      "refused after being accepted → refresh at once, whatever the count",
      ready(login({ refused: true, accepted: true, unacceptedForced: 6, lastForcedAt: 9999 })),
      at(MIN, 10_000),
      false,
      "refresh:rejected",
    ],
    ["refused, timer → idle (refreshes for refusals follow demand)", ready(login({ refused: true })), at(MIN), true, "idle"],
    ["no refresh token, valid → serve", ready(login({ tokens: tokens(1, { refreshToken: undefined }) })), at(50 * MIN), false, "serve"],
    [
      "no refresh token, expired → fail, re-login",
      ready(login({ tokens: tokens(1, { refreshToken: undefined }) })),
      at(2 * HOUR),
      false,
      "fail:reauth",
    ],
    ["refreshing, valid token → serve", refreshing(f), at(50 * MIN), false, "serve"],
    ["refreshing, expired → wait", refreshing(f), at(2 * HOUR), false, "wait"],
    ["refreshing, refused → wait", refreshing(f, login({ refused: true })), at(MIN), false, "wait"],
    ["backing off, valid → serve (the timer retries)", backingOff(), at(50 * MIN), false, "serve"],
    ["backing off, expired, last attempt < 1 s ago → fail fast", backingOff(login(), 60_000, 9500), at(2 * HOUR, 10_000), false, "fail"],
    [
      "backing off, expired, last attempt ≥ 1 s ago → demand retries",
      backingOff(login(), 60_000, 8000),
      at(2 * HOUR, 10_000),
      false,
      "refresh:expired",
    ],
    ["backing off, timer before retryAt → idle", backingOff(login(), 60_000), at(2 * HOUR, 10_000), true, "idle"],
    ["backing off, timer at retryAt → refresh", backingOff(login(), 10_000), at(2 * HOUR, 10_000), true, "refresh:expired"],
    ["empty, refresh_token grant → fail, re-login", { kind: "empty" }, at(0), false, "fail:reauth"],
    ["empty, client credentials → refresh", { kind: "empty" }, at(0), false, "refresh:startup", { grant: "client_credentials" }],
    ["reauth, checked < 1 s ago → fail fast", reauth(9500), at(0, 10_000), false, "fail"],
    ["reauth, checked ≥ 1 s ago → look at the store", reauth(8000), at(0, 10_000), false, "recheck"],
    ["loading → load", { kind: "loading" }, at(0), false, "load"],
    ["closed → fail", { kind: "closed" }, at(0), false, "fail"],
    ["window 0: in the last 15 min → serve, no background refresh", ready(), at(50 * MIN), false, "serve", { refreshWindowMs: 0 }],
    ["window 0: expired, timer → idle", ready(), at(2 * HOUR), true, "idle", { refreshWindowMs: 0 }],
    ["window 0: expired, caller → refresh", ready(), at(2 * HOUR), false, "refresh:expired", { refreshWindowMs: 0 }],
  ];
  for (const [name, state, now, background, expected, extra] of cases) {
    it(name, () => {
      const d = decide(state, now, background, { ...settings, ...extra });
      const label = d.do === "refresh" ? `refresh:${d.reason}` : d.do === "fail" && d.reauth ? "fail:reauth" : d.do;
      assert.equal(label, expected);
    });
  }

  it("misconfigured: every caller fails fast with the configuration error, the timer does nothing, no wake", () => {
    const state = transition(refreshing(f), { type: "misconfigured", flight: f, error: configError });
    assert.equal(state.kind, "misconfigured");
    for (const now of [at(MIN), at(2 * HOUR, 10 * HOUR)]) {
      const d = decide(state, now, false, settings);
      assert.ok(d.do === "fail" && d.error === configError && d.reauth !== true, JSON.stringify(d));
      assert.equal(decide(state, now, true, settings).do, "idle");
    }
    assert.equal(wakeAt(state, settings), undefined);
    assert.equal(serveUntil(state, settings), undefined);
  });

  it("a closed manager fails with TokenManagerClosedError", () => {
    const d = decide({ kind: "closed" }, at(0), false, settings);
    assert.ok(d.do === "fail" && d.error instanceof TokenManagerClosedError && d.error.code === "ERR_MANAGER_CLOSED");
  });

  it("the timer wakes at the window, at the backoff's retry, and not at all for a refused token or window 0", () => {
    assert.deepEqual(wakeAt(ready(), settings), { wall: T0 + HOUR - 1000 - 15 * MIN });
    assert.deepEqual(wakeAt(backingOff(login(), 4242), settings), { monotonic: 4242 });
    assert.equal(wakeAt(ready(login({ refused: true })), settings), undefined);
    assert.equal(wakeAt(backingOff(login({ refused: true }), 4242), settings), undefined);
    assert.equal(wakeAt(ready(), { ...settings, refreshWindowMs: 0 }), undefined);
    assert.equal(wakeAt(refreshing(f), settings), undefined);
  });

  it("serveUntil (the hot path's cache) agrees with decide(): serve before it, anything else from it on", () => {
    const states: [string, State, Partial<Settings>][] = [
      ["ready", ready(), {}],
      ["ready, window 0", ready(), { refreshWindowMs: 0 }],
      ["ready, no refresh token", ready(login({ tokens: tokens(1, { refreshToken: undefined }) })), {}],
      ["ready, client credentials", ready(login({ tokens: tokens(1, { refreshToken: undefined }) })), { grant: "client_credentials" }],
    ];
    for (const [name, state, extra] of states) {
      const s2 = { ...settings, ...extra };
      const fast = serveUntil(state, s2);
      assert.ok(fast !== undefined, name);
      const before = decide(state, { wall: fast.until - 1, monotonic: 10_000 }, false, s2);
      const at = decide(state, { wall: fast.until, monotonic: 10_000 }, false, s2);
      assert.ok(before.do === "serve" && before.token === fast.token, `${name}: serve before`);
      assert.notEqual(at.do, "serve", `${name}: not a plain serve from until on`);
    }
    for (const state of [ready(login({ refused: true })), refreshing(f), backingOff(), reauth(), { kind: "empty" } as State]) {
      assert.equal(serveUntil(state, settings), undefined, state.kind);
    }
  });
});
