/**
 * What every token-manager suite needs, registered inside a `describe`: a real test IdP
 * for the suite, managers on a manual clock closed at the end, and — when the suite ends —
 * proof that no event or error seen held token material.
 */
import assert from "node:assert/strict";
import { after, before, beforeEach } from "node:test";
import { createTokenManager, type TokenEvent, type TokenManager, type TokenManagerOptions } from "../../src/index.js";
import { type Idp, type IdpOptions, startIdp } from "./idp.js";
import { createLeakScanner, type LeakScanner } from "./leaks.js";
import { createManualClock, type ManualClock } from "./manual-clock.js";

export interface ManagerSuite {
  readonly idp: Idp;
  readonly leaks: LeakScanner;
  /** Every event any manager of the suite emitted; scanned for tokens at the end. */
  readonly events: TokenEvent[];
  /** The test IdP's public CLI client, over plain http on loopback. */
  cli(): { issuer: string; clientId: string; allowInsecureRequests: true };
  /** A manager of the CLI client (closed at the end), its events into `seen` and `events`. */
  manage(extra?: Partial<TokenManagerOptions>, seen?: TokenEvent[]): TokenManager;
  /** A manager on a manual clock (unless `extra.clock` says otherwise), logged in. */
  setup(extra?: Partial<TokenManagerOptions>): Promise<{
    manager: TokenManager;
    clock: ManualClock;
    seen: TokenEvent[];
    login: Awaited<ReturnType<Idp["login"]>>;
  }>;
  /** getAccessToken, the token remembered for the leak scan. */
  get(m: TokenManager, options?: Parameters<TokenManager["getAccessToken"]>[0]): Promise<string>;
  /** The rejection of `p` (kept for the leak scan); fails the test if it resolves. */
  rejects(p: Promise<unknown>): Promise<unknown>;
  /** Keep a manager made by hand to be closed at the end. */
  keep(m: TokenManager): TokenManager;
}

export function managerSuite(idpOptions: IdpOptions = { accessTokenTtl: 3600 }): ManagerSuite {
  let idp: Idp | undefined;
  const leaks = createLeakScanner();
  const events: TokenEvent[] = [];
  const errors: unknown[] = [];
  const managers: TokenManager[] = [];

  before(async () => {
    idp = await startIdp(idpOptions);
  });
  after(async () => {
    for (const m of managers) m.close();
    // A suite whose tests ran (not all filtered out) must have seen tokens to look for.
    if (managers.length > 0) assert.ok(leaks.count > 0, "the suite saw tokens to look for");
    for (const e of events) leaks.assertClean(e, `event ${e.type}`);
    for (const e of errors) leaks.assertClean(e, "error");
    await idp?.close();
  });
  beforeEach(() => {
    idp?.setTokenLatency(0);
    idp?.setTokenOutage(undefined);
    idp?.rewriteTokenResponse(undefined);
    idp?.setTokenTransportFault(undefined);
  });

  const suite: ManagerSuite = {
    get idp() {
      assert.ok(idp, "the suite's IdP starts in before()");
      return idp;
    },
    leaks,
    events,
    cli: () => ({ issuer: suite.idp.issuer, clientId: suite.idp.clientId, allowInsecureRequests: true }),
    manage(extra = {}, seen = []) {
      return suite.keep(
        createTokenManager({
          ...suite.cli(),
          random: () => 0.5,
          onEvent: (e) => {
            seen.push(e);
            events.push(e);
          },
          ...extra,
        }),
      );
    },
    async setup(extra = {}) {
      const clock = "clock" in extra ? extra.clock : createManualClock();
      const seen: TokenEvent[] = [];
      const manager = suite.manage({ ...extra, clock }, seen);
      const login = await suite.idp.login();
      leaks.remember(login.access_token, login.refresh_token, login.id_token as string | undefined);
      await manager.setTokens(login);
      return { manager, clock: clock as ManualClock, seen, login };
    },
    async get(m, options) {
      const t = await m.getAccessToken(options);
      leaks.remember(t);
      return t;
    },
    async rejects(p) {
      try {
        await p;
      } catch (error) {
        errors.push(error);
        return error;
      }
      assert.fail("expected a rejection");
    },
    keep(m) {
      managers.push(m);
      return m;
    },
  };
  return suite;
}
