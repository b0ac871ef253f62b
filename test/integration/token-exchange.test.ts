/**
 * Token exchange (issue 18 item 2) on the real identity provider, whose RFC 8693 grant is
 * registered with oidc-provider's own `registerGrantType`: a user's token traded for one
 * meant for the events service only, cached, shared by concurrent callers, exchanged again
 * when the user's token changes, before it expires and after a server's refusal (the
 * interceptor's retry), delegation (`act`), a platform's client assertion for the exchange
 * client — and the refusals: `invalid_target` (configuration, once), `invalid_grant` for a
 * dead subject (the subject's reauth, once), with no token in any error.
 */
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, type ConnectRouter, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { decodeJwt } from "jose";
import { EchoService } from "../../gen/connectoidc/test/v1/echo_pb.js";
import {
  createAuthInterceptor,
  createTokenExchange,
  createTokenManager,
  ProviderConfigurationError,
  ReauthRequiredError,
  type TokenExchangeOptions,
} from "../../src/index.js";
import { verifiedTokenKey } from "../../src/server.js";
import { startTestServer } from "../../src/testing.js";
import { type Idp, startIdp } from "../support/idp.js";
import { type JwtIssuer, startJwtIssuer } from "../support/jwt-issuer.js";
import { createLeakScanner } from "../support/leaks.js";
import { createManualClock } from "../support/manual-clock.js";

const EVENTS = "https://events.example.test";
const TOOLS = "https://tools.example.test";

/** Waits until `check()` holds, at most `ms`; fails naming `what`. */
async function until(check: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = performance.now() + ms;
  while (!check()) {
    if (performance.now() > end) assert.fail(`not within ${ms} ms: ${what}`);
    await sleep(10);
  }
}

describe("createTokenExchange (RFC 8693) on the real identity provider", () => {
  let idp: Idp;
  let platform: JwtIssuer;
  const leaks = createLeakScanner();

  before(async () => {
    platform = await startJwtIssuer();
    idp = await startIdp({
      accessTokenTtl: 60,
      tokenExchange: { targets: [EVENTS, TOOLS] },
      workloadClient: { jwksUri: platform.jwksUri },
    });
  });
  after(async () => {
    await idp?.close();
    await platform?.close();
  });

  /** A user signed in through the public client, as the subject. */
  const signedInUser = async () => {
    const tokens = createTokenManager({ issuer: idp.issuer, clientId: idp.clientId, allowInsecureRequests: true });
    const login = await idp.login();
    leaks.remember(login.access_token, login.refresh_token, login.id_token);
    await tokens.setTokens(login);
    return { tokens, login };
  };

  const exchangeOptions = (extra: Partial<TokenExchangeOptions> & Pick<TokenExchangeOptions, "subject">): TokenExchangeOptions => ({
    issuer: idp.issuer,
    clientId: idp.serviceClient.clientId,
    clientSecret: idp.serviceClient.clientSecret,
    audience: EVENTS,
    allowInsecureRequests: true,
    ...extra,
  });

  it("exchanges the user's token for one meant for the events service; N concurrent callers → 1 exchange", async () => {
    using user = (await signedInUser()).tokens;
    const events = createTokenExchange(exchangeOptions({ subject: user }));
    idp.resetStats();
    const tokens = await Promise.all(Array.from({ length: 12 }, () => events.getAccessToken()));
    assert.equal(idp.stats.byGrantType.token_exchange, 1, "one exchange for twelve callers");
    assert.equal(new Set(tokens).size, 1);
    const claims = decodeJwt(tokens[0]!);
    assert.equal(claims.aud, EVENTS, "meant for the events service only");
    assert.equal(claims.sub, idp.accountId, "still the user");
    assert.equal(claims.client_id, idp.serviceClient.clientId);
    assert.equal(await events.getAccessToken(), tokens[0], "cached");
    assert.equal(idp.stats.byGrantType.token_exchange, 1);
    leaks.remember(...tokens);
  });

  it("exchanges again when the subject's token changes", async () => {
    using user = (await signedInUser()).tokens;
    const events = createTokenExchange(exchangeOptions({ subject: user }));
    idp.resetStats();
    const first = await events.getAccessToken();
    const userToken = await user.getAccessToken();
    const refreshed = await user.getAccessToken({ rejected: userToken }); // the user's token is replaced
    assert.notEqual(refreshed, userToken);
    const second = await events.getAccessToken();
    assert.notEqual(second, first, "a token exchanged for the new subject token");
    assert.equal(idp.stats.byGrantType.token_exchange, 2);
    leaks.remember(first, second, userToken, refreshed);
  });

  it("exchanges again before the token expires (refresh policy), callers keep the cached one meanwhile", async () => {
    using user = (await signedInUser()).tokens;
    const clock = createManualClock();
    const events = createTokenExchange(exchangeOptions({ subject: user, clock, refreshWindowMs: 10_000 }));
    idp.resetStats();
    const first = await events.getAccessToken();
    await clock.advance(45_000); // 60 s token: not yet due (window min(10 s, 15 s), 1 s margin)
    assert.equal(await events.getAccessToken(), first);
    assert.equal(idp.stats.byGrantType.token_exchange, 1, "not due yet");
    await clock.advance(5_000); // 50 s: inside the window
    assert.equal(await events.getAccessToken(), first, "still valid: served while the next is asked for");
    await until(() => idp.stats.byGrantType.token_exchange === 2, "the background exchange");
    let second = first;
    await until(() => {
      void events.getAccessToken().then((t) => (second = t));
      return second !== first;
    }, "the new token served");
    assert.equal(idp.stats.byGrantType.token_exchange, 2, "one exchange ahead of expiry");
    leaks.remember(first, second);
  });

  it("works with the interceptor's reactive retry: a refused token is exchanged again, the call succeeds", async () => {
    using user = (await signedInUser()).tokens;
    const events = createTokenExchange(exchangeOptions({ subject: user }));
    const seen: string[] = [];
    // The events service refuses the first token it sees once (as after a revocation), then accepts.
    const refuseFirst: Interceptor = (next) => async (req) => {
      const token = req.header.get("authorization")?.slice("Bearer ".length) ?? "";
      seen.push(token);
      if (seen.length === 1) throw new ConnectError("revoked", Code.Unauthenticated);
      return next(req);
    };
    const routes = (router: ConnectRouter) =>
      router.service(EchoService, { say: (req, ctx) => ({ text: req.text, subject: ctx.values.get(verifiedTokenKey)?.subject ?? "" }) });
    await using server = await startTestServer({
      identityProvider: { issuer: idp.issuer, audience: EVENTS, jwksUri: idp.jwksUri },
      routes,
      interceptors: [refuseFirst],
    });
    const client = createClient(
      EchoService,
      createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "1.1", interceptors: [createAuthInterceptor(events)] }),
    );
    idp.resetStats();
    const answer = await client.say({ text: "hi" });
    assert.equal(answer.subject, idp.accountId, "the events service saw the user");
    assert.equal(seen.length, 2);
    assert.notEqual(seen[1], seen[0], "the retry carried a newly exchanged token");
    assert.equal(idp.stats.byGrantType.token_exchange, 2);
    // The user's own token (audience urn:connect-oidc:test) is refused by the events service.
    const userClient = createClient(
      EchoService,
      createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "1.1", interceptors: [createAuthInterceptor(user)] }),
    );
    await assert.rejects(userClient.say({ text: "hi" }), (e) => ConnectError.from(e).code === Code.Unauthenticated);
    // A token refused again right away is not exchanged again at once (paced, as forced refreshes are).
    const current = await events.getAccessToken();
    await events.getAccessToken({ rejected: current });
    const again = await events.getAccessToken();
    assert.equal(await events.getAccessToken({ rejected: again }), again, "paced: the second forced exchange waits");
    leaks.remember(...seen, current, again);
  });

  it("delegation: an agent acting for the user (actor_token → act), authenticated with a platform's client assertion", async () => {
    using user = (await signedInUser()).tokens;
    using agent = createTokenManager({
      issuer: idp.issuer,
      clientId: idp.serviceClient.clientId,
      clientSecret: idp.serviceClient.clientSecret,
      grant: "client_credentials",
      allowInsecureRequests: true,
    });
    const assertions: string[] = [];
    const tools = createTokenExchange({
      issuer: idp.issuer,
      clientId: idp.workloadClientId,
      // A fresh platform JWT per request (the provider accepts each assertion once).
      clientAssertion: async () => {
        const jwt = await platform.sign(
          { iss: idp.workloadClientId, sub: idp.workloadClientId, aud: idp.issuer },
          { typ: "JWT", expiresIn: 300 },
        );
        assertions.push(jwt);
        return jwt;
      },
      subject: user,
      actor: agent,
      resource: TOOLS,
      scope: "api",
      allowInsecureRequests: true,
    });
    const token = await tools.getAccessToken();
    const claims = decodeJwt(token);
    assert.equal(claims.sub, idp.accountId);
    assert.deepEqual(claims.act, { sub: idp.serviceClient.clientId }, "the agent is named as the actor");
    assert.equal(claims.aud, TOOLS);
    assert.equal(claims.client_id, idp.workloadClientId);
    assert.equal(assertions.length, 1);
    leaks.remember(token, ...assertions);
  });

  it("invalid_target: a ProviderConfigurationError naming `audience`, asked once", async () => {
    using user = (await signedInUser()).tokens;
    const unknown = createTokenExchange(exchangeOptions({ subject: user, audience: "https://unknown.example.test" }));
    idp.resetStats();
    const error = await unknown.getAccessToken().then(
      () => assert.fail("an unknown target must not give a token"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof ProviderConfigurationError, `configuration family, got ${String(error)}`);
    assert.equal(error.reason, "resource");
    assert.match(error.message, /does not know the audience "https:\/\/unknown\.example\.test" \(invalid_target\): check `audience`/);
    for (let i = 0; i < 3; i++) await assert.rejects(unknown.getAccessToken(), (e) => e === error);
    assert.equal(idp.stats.byGrantType.token_exchange, 1, "one request in all");
    leaks.assertClean(error, "the invalid_target error");
  });

  it("invalid_grant (the user's login ended): the subject is told, the user must log in again — once, no loop", async () => {
    const { tokens: user, login } = await signedInUser();
    using _user = user;
    const events = createTokenExchange(exchangeOptions({ subject: user }));
    await idp.revokeLogin(login.refresh_token); // the user signed out everywhere
    idp.resetStats();
    const error = await events.getAccessToken().then(
      () => assert.fail("a dead login must not give a token"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof ReauthRequiredError, `log in again, got ${String(error)}`);
    assert.match(error.message, /log in again/);
    assert.equal(idp.stats.byGrantType.token_exchange, 1);
    assert.equal(idp.stats.byGrantType.refresh_token, 1, "the user's token manager was told its token was refused, and tried once");
    for (let i = 0; i < 3; i++) await assert.rejects(events.getAccessToken(), ReauthRequiredError);
    await sleep(300);
    assert.deepEqual([idp.stats.byGrantType.token_exchange, idp.stats.byGrantType.refresh_token], [1, 1], "nothing more asked");
    leaks.assertClean(error, "the reauth error");
  });

  it("invalid_grant for a subject from a function: ReauthRequiredError, that token not exchanged again", async () => {
    const { login } = await signedInUser();
    await idp.revokeLogin(login.refresh_token);
    const events = createTokenExchange(exchangeOptions({ subject: () => login.access_token }));
    idp.resetStats();
    const error = await events.getAccessToken().then(
      () => assert.fail("a dead subject must not give a token"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof ReauthRequiredError);
    await assert.rejects(events.getAccessToken(), (e) => e === error);
    assert.equal(idp.stats.byGrantType.token_exchange, 1);
    leaks.assertClean(error, "the reauth error");
  });

  it("options are checked at the door", () => {
    const subject = () => "t";
    const base = { issuer: "https://login.example.com", clientId: "agent", subject };
    assert.throws(() => createTokenExchange(base), /name the target service with `audience` or `resource`/);
    assert.throws(() => createTokenExchange({ ...base, audience: "x", subject: "token" as never }), /`subject` must be a TokenProvider/);
    assert.throws(() => createTokenExchange({ ...base, audience: "x", actor: 42 as never }), /`actor` must be a TokenProvider/);
  });
});
