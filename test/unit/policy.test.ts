import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  backoffDelay,
  forcedRefreshDelay,
  failureKind,
  isTerminal,
  isUsable,
  MAX_RETRY_AFTER_MS,
  refreshAt,
  retryAfterMs,
  tokenTimes,
  usableUntil,
} from "../../src/policy.js";

const HOUR = 3600_000;
const MIN = 60_000;

describe("refresh policy", () => {
  it("refreshes a 1 h token when 15 min remain (minus the expiry margin)", () => {
    const t = tokenTimes(0, 3600);
    assert.equal(t.expiresAt, HOUR);
    assert.equal(usableUntil(t), HOUR - 1000);
    assert.equal(refreshAt(t, 15 * MIN), HOUR - 1000 - 15 * MIN);
  });

  it("uses 25 % of the lifetime when that is shorter than the window", () => {
    const t = tokenTimes(0, 600); // 10 min token: window 2.5 min
    assert.equal(refreshAt(t, 15 * MIN), usableUntil(t) - 150_000);
    const short = tokenTimes(1000, 4); // 4 s token: margin 400 ms, window 1 s
    assert.equal(usableUntil(short), 1000 + 4000 - 400);
    assert.equal(refreshAt(short, 15 * MIN), 1000 + 4000 - 400 - 1000);
  });

  it("counts expiry from when the request was sent", () => {
    const t = tokenTimes(5000, 60);
    assert.equal(t.issuedAt, 5000);
    assert.equal(t.expiresAt, 65_000);
    assert.ok(isUsable(t, 63_999));
    assert.ok(!isUsable(t, 64_000));
  });

  it("assumes 5 min when expires_in is missing or nonsense", () => {
    for (const e of [undefined, 0, -5, Number.NaN]) assert.equal(tokenTimes(0, e).expiresAt, 5 * MIN);
  });

  it("backs off exponentially with jitter, capped", () => {
    assert.equal(
      backoffDelay(1, () => 0),
      500,
    );
    assert.equal(
      backoffDelay(1, () => 1),
      1000,
    );
    assert.equal(
      backoffDelay(3, () => 1),
      4000,
    );
    assert.equal(
      backoffDelay(30, () => 1),
      60_000,
    );
    assert.equal(
      backoffDelay(30, () => 0),
      30_000,
    );
    const spread = new Set(Array.from({ length: 20 }, () => backoffDelay(4, Math.random)));
    assert.ok(spread.size > 10, "jitter spreads retries");
  });

  it("treats invalid_grant and friends as terminal, outages as transient", () => {
    assert.ok(isTerminal({ status: 400, error: "invalid_grant" }));
    assert.ok(isTerminal({ status: 401, error: "invalid_client" }));
    assert.ok(isTerminal({ status: 400, error: "unauthorized_client" }));
    assert.ok(!isTerminal({ status: 503, error: "invalid_grant" }));
    assert.ok(!isTerminal({ status: 429 }));
    assert.ok(!isTerminal({ status: 500 }));
    assert.ok(!isTerminal({}));
    assert.ok(!isTerminal({ status: 400, error: "temporarily_unavailable" }));
  });

  it("classifies answers by what they mean: a 4xx without an OAuth error is a refusal", () => {
    assert.ok(isTerminal({ status: 400 }), "400, no body");
    assert.ok(isTerminal({ status: 403 }), "403, HTML page");
    assert.ok(isTerminal({ status: 401, error: "invalid_token" }), "401 with any code: the client is refused");
    assert.ok(!isTerminal({ status: 408 }));
    assert.ok(!isTerminal({ status: 429, error: "invalid_grant" }));
    assert.ok(!isTerminal({ status: 502 }));
    assert.ok(!isTerminal({ status: 400, error: "temporarily_unavailable" }), "a parsable code that may pass");
    assert.ok(isTerminal({ status: 400, error: "invalid_request" }), "the same request can never pass");
  });

  it("tells the three kinds apart: wait, log in again, fix the configuration", () => {
    const table: [Parameters<typeof failureKind>[0], "refresh_token" | "client_credentials", string][] = [
      [{}, "refresh_token", "transient"],
      [{ status: 503 }, "client_credentials", "transient"],
      [{ status: 429, error: "invalid_client" }, "refresh_token", "transient"],
      [{ status: 408 }, "client_credentials", "transient"],
      [{ status: 400, error: "temporarily_unavailable" }, "client_credentials", "transient"],
      [{ status: 400, error: "invalid_grant" }, "refresh_token", "reauth"],
      [{ status: 400, error: "invalid_grant" }, "client_credentials", "configuration"],
      [{ status: 400 }, "refresh_token", "reauth"],
      [{ status: 403 }, "client_credentials", "configuration"],
      [{ status: 401, error: "invalid_client" }, "refresh_token", "configuration"],
      [{ status: 401 }, "refresh_token", "configuration"],
      [{ status: 404 }, "refresh_token", "configuration"],
      [{ status: 405 }, "client_credentials", "configuration"],
      [{ status: 400, error: "invalid_scope" }, "refresh_token", "configuration"],
      [{ status: 400, error: "invalid_target" }, "client_credentials", "configuration"],
      [{ status: 400, error: "unauthorized_client" }, "refresh_token", "configuration"],
      [{ status: 400, error: "unsupported_grant_type" }, "client_credentials", "configuration"],
      [{ status: 400, error: "invalid_request" }, "refresh_token", "configuration"],
      [{ error: "invalid_scope" }, "refresh_token", "configuration"],
    ];
    for (const [facts, grant, kind] of table) assert.equal(failureKind(facts, grant), kind, `${JSON.stringify(facts)} ${grant}`);
  });

  it("reads Retry-After in seconds or as a date, capped", () => {
    const now = Date.parse("2026-11-29T10:00:00Z");
    assert.equal(retryAfterMs("7", now), 7000);
    assert.equal(retryAfterMs("Sun, 29 Nov 2026 10:00:20 GMT", now), 20_000);
    assert.equal(retryAfterMs("Sun, 29 Nov 2026 09:00:00 GMT", now), 0, "a date in the past: now");
    assert.equal(retryAfterMs("86400", now), MAX_RETRY_AFTER_MS);
    for (const bad of [undefined, null, "", "soon", "-5"]) assert.equal(retryAfterMs(bad, now), undefined, String(bad));
  });

  it("pauses forced refreshes 0, 1 s, 2 s, ... up to 60 s while none of their tokens is accepted", () => {
    assert.deepEqual([0, 1, 2, 3, 6, 7, 20].map(forcedRefreshDelay), [0, 1000, 2000, 4000, 32_000, 60_000, 60_000]);
  });

  it("takes a lifetime over 366 days as 366 days (a finite date to store)", () => {
    const t = tokenTimes(0, 1e306);
    assert.ok(Number.isFinite(t.expiresAt));
    assert.equal(t.expiresAt, 366 * 24 * HOUR);
  });
});
