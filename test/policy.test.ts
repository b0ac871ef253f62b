import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { backoffDelay, isTerminal, isUsable, refreshAt, tokenTimes, usableUntil } from "../src/policy.js";

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
});
