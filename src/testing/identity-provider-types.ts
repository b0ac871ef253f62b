/**
 * The public shape of `connect-oidc/testing`'s identity provider: its options, the login
 * options, the counters and the handle a test holds.
 */
import type Provider from "oidc-provider";
import type * as oidc from "openid-client";
import type { DPoPKey } from "../dpop-key.js";
import type { TokenEndpointResponse } from "../types.js";

/**
 * Options of {@link startTestIdentityProvider}. Every option has a default; `{}` gives
 * 5-second JWT access tokens for the audience `urn:connect-oidc:test`, rotating refresh
 * tokens living a day, and DPoP without nonces (a login is bearer unless it sends a proof).
 *
 * @example
 * ```ts
 * import { startTestIdentityProvider } from "connect-oidc/testing";
 *
 * // 2-second tokens, refresh tokens that die after a minute, DPoP with nonces, two API scopes.
 * const idp = await startTestIdentityProvider({
 *   accessTokenTtl: 2,
 *   refreshTokenTtl: 60,
 *   dpop: { requireNonce: true },
 *   apiScopes: ["read", "write"],
 * });
 * ```
 */
export interface TestIdentityProviderOptions {
  /** Access token lifetime in seconds. Default 5: a test of a few seconds sees refreshes. */
  readonly accessTokenTtl?: number;
  /** Refresh token (and grant) lifetime in seconds. Default one day. */
  readonly refreshTokenTtl?: number;
  /**
   * Rotate refresh tokens on every refresh (default true, as oidc-provider does for public
   * clients): re-using a rotated one answers `invalid_grant` and revokes the whole login.
   * false: a refresh token stays valid and can be re-used.
   */
  readonly rotateRefreshTokens?: boolean;
  /** The `aud` of access tokens (RFC 8707 resource indicator). Default `urn:connect-oidc:test`. */
  readonly audience?: string;
  /**
   * More resource servers (RFC 8707) besides `audience`: a login asks for all of them, and a
   * refresh with `resource` set to one of them gets a JWT access token with that `aud`.
   * Default none.
   */
  readonly resources?: readonly string[];
  /**
   * The scopes the resource server (the audience) grants; a login asks for all of them by
   * default, a client credentials client gets them all. Default `["api"]`.
   */
  readonly apiScopes?: readonly string[];
  /**
   * Opaque access tokens (not JWTs) for the audience, and RFC 7662 introspection on
   * (`introspection_endpoint` in discovery; a confidential client's credentials introspect),
   * for resource servers that introspect. Default false: JWT access tokens, no introspection.
   */
  readonly opaqueAccessTokens?: boolean;
  /** Account (the `sub` of tokens) that logins and device approvals sign in as. Default "test-user". */
  readonly accountId?: string;
  /**
   * DPoP (RFC 9449): a token request with a `DPoP` proof gets a DPoP-bound answer
   * (`token_type: "DPoP"`, an access token with `cnf.jkt`; the public client's refresh token
   * is bound to the same key). `requireNonce`: every proof must carry the provider's nonce
   * (one without answers 400 `use_dpop_nonce` with a `DPoP-Nonce` header). `true` is
   * `{ requireNonce: false }`, the default. `false`: DPoP off (a proof is ignored); every
   * token is a bearer token, and `login({ dpop })` fails with a ConfigurationError.
   */
  readonly dpop?: boolean | { readonly requireNonce?: boolean };
  /**
   * `interval` (seconds) in device authorization responses. Default 1 (oidc-provider sends
   * none, and openid-client then waits 5 s before every poll).
   */
  readonly deviceCodeInterval?: number;
  /**
   * Refuse an authorization request that asks for `openid` without a `nonce`, as some
   * providers do even in the code flow (the answer is a redirect with
   * `error=invalid_request`). Default false.
   */
  readonly requireNonce?: boolean;
  /**
   * Register {@link TestIdentityProvider.exactClientId}: a public web client (PKCE, no
   * secret) whose redirect URIs match exactly these, port included, as providers that ignore
   * RFC 8252's any-port rule for loopback do. Default: not registered.
   */
  readonly exactRedirectUris?: readonly string[];
  /**
   * The token endpoint's client authentication methods, as discovery lists them. Clients
   * registered with a method not listed are left out. Default: oidc-provider's list.
   */
  readonly clientAuthMethods?: readonly string[];
  /**
   * Register {@link TestIdentityProvider.workloadClientId}: a confidential client on
   * private_key_jwt whose keys are another issuer's (its `jwks_uri`), as a provider trusting
   * a platform's tokens (workload identity) is set up. Its client assertions are JWTs that
   * issuer signs with `iss` and `sub` the client id and `aud` this provider; each is accepted
   * once. Default: not registered.
   */
  readonly workloadClient?: { readonly jwksUri: string; readonly signingAlg?: "RS256" | "ES256" | "PS256" | "EdDSA" };
  /**
   * RFC 8693 token exchange (`urn:ietf:params:oauth:grant-type:token-exchange`), registered
   * with oidc-provider's `registerGrantType` for the confidential clients: a subject token
   * (and an optional actor token, which becomes the `act` claim) issued by this provider is
   * traded for a JWT access token for one of `targets` (sent as `audience` or `resource`;
   * others answer `invalid_target`). A subject token whose login has ended (`revokeLogin`)
   * answers `invalid_grant`. Default: off.
   */
  readonly tokenExchange?: { readonly targets: readonly string[] };
}

/** Options of {@link TestIdentityProvider.login}. *
 * @example
 * ```ts
 * // A DPoP-bound login with one scope; the key comes back as `dpopKey`.
 * const login = await idp.login({ scope: "openid offline_access read", dpop: true });
 * await tokens.setTokens(login);
 * ```
 */
export interface TestLoginOptions {
  /** Default `openid offline_access` and every API scope. */
  readonly scope?: string;
  /** Default `http://127.0.0.1/callback`; any port works (loopback, RFC 8252 §7.3). */
  readonly redirectUri?: string;
  /**
   * Sent as the `resource` parameter when given (the provider defaults to its audience);
   * default: the audience and every one of the provider's `resources` when it has any.
   */
  readonly resource?: string | readonly string[];
  /**
   * Bind the login to a DPoP key (`dpop_jkt` in the authorization request, a proof on the code
   * exchange); the provider must have been started with `dpop`. `true`: a new ES256 key;
   * a {@link DPoPKey}: that key. Both come back as the response's `dpopKey`, which `setTokens`
   * keeps. An openid-client `DPoPHandle`: its key (the response then has no `dpopKey`).
   * Default: a bearer login.
   */
  readonly dpop?: true | DPoPKey | oidc.DPoPHandle;
}

/**
 * A login's token response as openid-client returns it (with its helpers, e.g. `expiresIn()`),
 * plus the DPoP key it is bound to: what `TokenManager.setTokens` takes.
 *
 * @example
 * ```ts
 * const login = await idp.login();
 * console.log(login.token_type, login.expiresIn()); // "Bearer" 5
 * await tokens.setTokens(login);
 * ```
 */
export type TestLoginResponse = oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers & TokenEndpointResponse;

/** Counters of the token endpoint since start (or the last `resetStats()`). *
 * @example
 * ```ts
 * idp.resetStats();
 * const token = await tokens.getAccessToken();
 * await tokens.getAccessToken({ rejected: token }); // as after a server's 401: one refresh
 * assert.equal(idp.stats.byGrantType.refresh_token, 1);
 * assert.equal(idp.stats.invalidGrant, 0);
 * ```
 */
export interface TestIdentityProviderStats {
  /** Every POST to the token endpoint, whatever it answered (outages included). */
  tokenRequests: number;
  /** Token requests by `grant_type`; the device code grant is counted as `device_code`. */
  readonly byGrantType: {
    refresh_token: number;
    client_credentials: number;
    authorization_code: number;
    device_code: number;
    /** RFC 8693 token exchange (with `tokenExchange`). */
    token_exchange: number;
    [grantType: string]: number;
  };
  /** Token endpoint answers with `error: "invalid_grant"`. */
  invalidGrant: number;
  /** Token endpoint answers forced by `setTokenOutage`. */
  outages: number;
  /** Every token endpoint error answer, by its `error` code. */
  readonly errors: Record<string, number>;
}

/**
 * The token endpoint's outage (see {@link TestIdentityProvider.setTokenOutage}): an HTTP
 * status answered with an OAuth error body, or `"no-answer"` (requests hang).
 *
 * @example
 * ```ts
 * idp.setTokenOutage(503); // answers 503 temporarily_unavailable, retry-after: 1
 * idp.setTokenOutage("no-answer"); // requests hang until the client gives up
 * idp.setTokenOutage(undefined); // back to normal
 * ```
 */
export type TestTokenOutage = number | "no-answer";

/** A custom answer during an outage, as providers that bend RFC 6749 §5.2 send. *
 * @example
 * ```ts
 * // A provider that answers an HTML page with a 502.
 * idp.setTokenOutage(502, { body: "<html>Bad gateway</html>", headers: { "content-type": "text/html" } });
 * ```
 */
export interface TestOutageAnswer {
  /** Sent as is ("" = no body; an object as JSON). */
  readonly body?: string | object;
  /** e.g. `retry-after`, `www-authenticate`, `content-type: text/html`. */
  readonly headers?: Record<string, string>;
}

/** Where {@link TestIdentityProvider.setTokenLatency} waits. *
 * @example
 * ```ts
 * // The refresh token is rotated at once, the answer held for 2 s: a client that gives up
 * // after 1 s has lost its login.
 * idp.setTokenLatency(2000, { phase: "after" });
 * ```
 */
export interface TestLatencyOptions {
  /**
   * "before" (default): wait, then process the request; a client that gave up meanwhile
   * consumed nothing. "after": process at once, then hold the answer; a client that times out
   * has lost a rotated refresh token.
   */
  readonly phase?: "before" | "after";
}

/** A transport fault of the token endpoint, after it processed the request. *
 * @example
 * ```ts
 * idp.setTokenTransportFault("reset-mid-body"); // the next refresh is processed, its answer cut off
 * idp.setTokenTransportFault(undefined);
 * ```
 */
export type TestTransportFault = "reset-mid-body" | "malformed-json";

/**
 * A running in-process OpenID provider (oidc-provider on 127.0.0.1) for integration tests.
 *
 * Clients: {@link clientId} (public native client: PKCE, authorization code, refresh token and
 * device code grants), {@link serviceClient} (client_secret_basic), {@link postClient}
 * (client_secret_post), {@link jwtClient} (private_key_jwt), all three with the client
 * credentials grant. Access tokens are RS256 JWTs (RFC 9068, `typ: at+jwt`) for
 * {@link audience}, also when no `resource` parameter is sent.
 *
 * @example
 * ```ts
 * import { startTestIdentityProvider } from "connect-oidc/testing";
 *
 * const idp = await startTestIdentityProvider();
 * const login = await idp.login(); // what setTokens takes
 * await idp.revokeLogin(login.refresh_token); // the user signed out elsewhere
 * await idp.close();
 * ```
 */
export interface TestIdentityProvider extends AsyncDisposable {
  /** `http://127.0.0.1:<port>`: discovery at `/.well-known/openid-configuration`. */
  readonly issuer: string;
  /** The public native client (no secret). */
  readonly clientId: "test-cli";
  /** A confidential client on client_secret_basic with the client credentials grant. */
  readonly serviceClient: { readonly clientId: "test-service"; readonly clientSecret: string };
  /** A confidential client on client_secret_post, whose secret holds characters Basic encodes (`-_.~`). */
  readonly postClient: { readonly clientId: "test-service-post"; readonly clientSecret: string };
  /** A confidential client on private_key_jwt: its private key (ES256) and key id. */
  readonly jwtClient: { readonly clientId: "test-service-jwt"; readonly privateKey: CryptoKey; readonly kid: string };
  /** The workload identity client; registered only with `workloadClient`. */
  readonly workloadClientId: "test-workload";
  /** The exact-redirect client; registered only with `exactRedirectUris`. */
  readonly exactClientId: "test-cli-exact";
  /** The `aud` of every access token. */
  readonly audience: string;
  /** The scopes of the resource server, as a login asks for them by default. */
  readonly apiScopes: readonly string[];
  /** The `sub` of every login. */
  readonly accountId: string;
  /** The JWKS URI (the public signing keys), for resource servers. */
  readonly jwksUri: string;
  /**
   * The oidc-provider instance, for tests that need more than the knobs.
   * @internal
   */
  readonly provider: Provider;
  /** Token endpoint counters. */
  readonly stats: Readonly<TestIdentityProviderStats>;
  /** Zero the counters. */
  resetStats(): void;
  /**
   * A headless authorization code + PKCE login of {@link clientId} through openid-client:
   * the tokens a user would get after signing in, ready for `TokenManager.setTokens`.
   */
  login(options?: TestLoginOptions): Promise<TestLoginResponse>;
  /** openid-client Configuration for {@link clientId} (discovery cached; http allowed). */
  cliConfig(): Promise<oidc.Configuration>;
  /** openid-client Configuration for {@link serviceClient} (client_secret_basic). */
  serviceConfig(): Promise<oidc.Configuration>;
  /**
   * Approve a pending device authorization as the test account, through the provider's
   * /device pages; the device code grant then answers tokens.
   */
  approveDeviceCode(userCode: string): Promise<void>;
  /** Deny a pending device authorization (the device code grant answers `access_denied`). */
  denyDeviceCode(userCode: string): Promise<void>;
  /**
   * End logins as a user signing out everywhere would: with a refresh token, the login it
   * belongs to; without, every login so far. Their refresh tokens then answer `invalid_grant`
   * (access tokens, being JWTs, stay valid at a resource server until they expire).
   */
  revokeLogin(refreshToken?: string): Promise<void>;
  /** Wait this long before (or after) the token endpoint answers. 0 = none. */
  setTokenLatency(ms: number, options?: TestLatencyOptions): void;
  /**
   * An outage of the token endpoint: a status (e.g. 503, with `retry-after: 1`, and the
   * error `temporarily_unavailable`) or `"no-answer"` (a request hangs until the outage
   * ends, then is processed, or until the client gives up). The request is not processed
   * while the outage lasts. `undefined` ends it. `answer` replaces the OAuth error body.
   */
  setTokenOutage(outage?: TestTokenOutage, answer?: TestOutageAnswer): void;
  /**
   * Injected fault on a real answer: the token endpoint processes the request (a refresh
   * token is consumed and rotated), then `rewrite` changes the JSON body of a successful
   * answer (e.g. a negative `expires_in`). undefined = normal.
   */
  rewriteTokenResponse(rewrite?: (body: Record<string, unknown>) => Record<string, unknown>): void;
  /**
   * A transport fault after the request was processed: "reset-mid-body" sends the status
   * line, headers and half the body, then destroys the socket; "malformed-json" sends 200
   * with a body cut short. undefined = normal.
   */
  setTokenTransportFault(fault?: TestTransportFault): void;
  /** Stop listening and drop every connection. Idempotent. */
  close(): Promise<void>;
}
