/**
 * The token machine's rules for resource servers' tokens (forResource, RFC 8707), pure:
 * a login read as one resource's token sees it (`viewOf`), the decision for that token,
 * what a refresh for one resource leaves of the others' and the main token's marks, and
 * when the timer wakes for them.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ProviderConfigurationError } from "../../src/errors.js";
import { refreshAt } from "../../src/policy.js";
import { decide, type Now, type Settings, wakeAt } from "../../src/token/decision.js";
import { type Flight, type Login, newLogin, type State, transition, viewOf } from "../../src/token/state.js";
import type { StoredTokens } from "../../src/types.js";

const MIN = 60_000;
const T0 = 1_700_000_000_000;
const EVENTS = "https://events.example.test";
const TOOLS = "https://tools.example.test";

const settings: Settings = {
  grant: "refresh_token",
  refreshWindowMs: 5 * MIN,
  clientId: "cli",
  issuer: "https://id.example",
  loginExpiringMs: 0,
};
const at = (wall: number, monotonic = 10 * MIN): Now => ({ wall, monotonic });
const resourceTokens = (token: string, issuedAt = T0, lifetime = 60 * MIN) => ({
  accessToken: token,
  issuedAt,
  expiresAt: issuedAt + lifetime,
});
const stored = (extra: Partial<StoredTokens> = {}): StoredTokens => ({
  version: 1,
  issuer: "https://id.example",
  clientId: "cli",
  accessToken: "main-1",
  refreshToken: "refresh-1",
  issuedAt: T0,
  expiresAt: T0 + 60 * MIN,
  resources: { [EVENTS]: resourceTokens("events-1"), [TOOLS]: resourceTokens("tools-1", T0, 20 * MIN) },
  ...extra,
});
const ready = (login: Login): State => ({ kind: "ready", login });
const flight = (reason: Flight["reason"], resource?: string): Flight => ({
  reason,
  ...(resource ? { resource } : {}),
  done: Promise.resolve(),
  grant: "refresh_token",
  startedAt: 0,
});

describe("resource tokens in the token machine's rules", () => {
  it("a resource's token is served, refreshed when due, fetched when missing — each by its own times", () => {
    const state = ready(newLogin(stored(), false));
    assert.deepEqual(decide(state, at(T0 + MIN), false, settings, EVENTS), { do: "serve", token: "events-1" });
    assert.deepEqual(decide(state, at(T0 + MIN), false, settings), { do: "serve", token: "main-1" });
    // TOOLS' 20 min token is due 5 min before its end; the main and EVENTS tokens are not.
    assert.equal(decide(state, at(T0 + 16 * MIN), false, settings, TOOLS).do, "serve-and-refresh");
    assert.equal(decide(state, at(T0 + 16 * MIN), false, settings, EVENTS).do, "serve");
    assert.deepEqual(decide(state, at(T0), false, settings, "https://new.example.test"), { do: "refresh", reason: "expired" });
    assert.deepEqual(decide(state, at(T0 + 16 * MIN), true, settings, TOOLS), { do: "refresh", reason: "proactive" });
  });

  it("the timer wakes for the earliest of the main token and the resources it is told of", () => {
    const state = ready(newLogin(stored(), false));
    const main = refreshAt({ issuedAt: T0, expiresAt: T0 + 60 * MIN }, settings.refreshWindowMs);
    const tools = refreshAt({ issuedAt: T0, expiresAt: T0 + 20 * MIN }, settings.refreshWindowMs);
    assert.ok(tools < main);
    assert.equal(wakeAt(state, settings)?.wall, main);
    assert.equal(wakeAt(state, settings, [EVENTS])?.wall, main);
    assert.equal(wakeAt(state, settings, [EVENTS, TOOLS])?.wall, tools);
  });

  it("a refusal marks that resource's token only; its forced refresh leaves the main token's marks and the other tokens", () => {
    let state: State = ready(newLogin(stored(), false));
    state = transition(state, { type: "accepted", token: "main-1" });
    state = transition(state, { type: "refused", token: "events-1", resource: EVENTS });
    const login = (state as Extract<State, { kind: "ready" }>).login;
    assert.equal(viewOf(login, EVENTS).refused, true);
    assert.equal(login.refused, false);
    assert.equal(viewOf(login, TOOLS).refused, false);
    assert.deepEqual(decide(state, at(T0 + MIN), false, settings, EVENTS), { do: "refresh", reason: "rejected" });
    const f = flight("rejected", EVENTS);
    state = transition(state, { type: "refresh-started", flight: f });
    // Another resource's caller with a usable token is served during the flight; EVENTS' waits.
    assert.deepEqual(decide(state, at(T0 + MIN), false, settings, TOOLS), { do: "serve", token: "tools-1" });
    assert.deepEqual(decide(state, at(T0 + MIN), false, settings, EVENTS), { do: "wait" });
    const after = stored({
      refreshToken: "refresh-2",
      resources: { ...stored().resources, [EVENTS]: resourceTokens("events-2", T0 + MIN) },
    });
    state = transition(state, {
      type: "refresh-done",
      flight: f,
      outcome: { tokens: after, inStore: after, adopted: false },
      at: 10 * MIN,
    });
    assert.equal(state.kind, "ready");
    const next = (state as Extract<State, { kind: "ready" }>).login;
    assert.equal(next.accepted, true, "the main token's marks kept");
    assert.equal(viewOf(next, EVENTS).refused, false);
    assert.equal(viewOf(next, EVENTS).unacceptedForced, 1, "the forced refresh counted for EVENTS");
    assert.equal(viewOf(next, EVENTS).tokens.refreshToken, "refresh-2", "every token sees the rotated refresh token");
    assert.equal((state as Extract<State, { kind: "ready" }>).resource, EVENTS);
  });

  it("a resource refused by the provider fails its callers without asking again; the rest is served", () => {
    const f = flight("expired", "https://unknown.example.test");
    let state: State = { kind: "refreshing", login: newLogin(stored(), false), flight: f, failures: 0 };
    const error = new ProviderConfigurationError("resource", "unknown resource");
    state = transition(state, { type: "misconfigured", flight: f, error });
    assert.equal(state.kind, "ready");
    assert.deepEqual(decide(state, at(T0 + MIN), false, settings, "https://unknown.example.test"), { do: "fail", error });
    assert.deepEqual(decide(state, at(T0 + MIN), true, settings, "https://unknown.example.test"), { do: "idle" });
    assert.deepEqual(decide(state, at(T0 + MIN), false, settings, EVENTS), { do: "serve", token: "events-1" });
    // The main token's own refusal of the configuration is still the manager's.
    const main = flight("expired");
    const mainState = transition(
      { kind: "refreshing", login: newLogin(stored(), false), flight: main, failures: 0 },
      { type: "misconfigured", flight: main, error },
    );
    assert.equal(mainState.kind, "misconfigured");
  });
});
