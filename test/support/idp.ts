/**
 * A real OpenID provider (oidc-provider) on 127.0.0.1 for integration tests.
 *
 * - `test-cli`: public native client (no secret, PKCE), authorization code,
 *   refresh token and device code grants. Refresh tokens rotate; re-using an old
 *   one answers `invalid_grant` and revokes the whole grant.
 * - `test-service`: confidential client (client_secret_basic / _post),
 *   client_credentials grant.
 * - `test-cli-exact` (only with `exactRedirectUris`): public *web* client whose redirect
 *   URIs match exactly, port included, as providers that ignore RFC 8252's any-port rule do.
 * - Access tokens are RS256 JWTs (`typ: at+jwt`) for the audience
 *   `urn:connect-oidc:test`, also when no `resource` parameter is sent.
 *
 * Loopback redirects: a native client (`application_type: "native"`) that
 * registered `http://127.0.0.1/callback` may use `http://127.0.0.1:<any port>/callback`
 * — oidc-provider strips the port of http loopback URIs (127.0.0.1, localhost,
 * [::1]) before comparing (RFC 8252 §7.3). Host and path must still match
 * exactly: `localhost` does not stand in for `127.0.0.1`. Web clients get no such leeway.
 *
 * Nothing here logs. The one line oidc-provider prints on import under Node 20
 * ("Unsupported runtime") is filtered while it loads.
 */
import { randomBytes, randomUUID } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { exportJWK, generateKeyPair } from "jose";
import type Provider from "oidc-provider";
import type { Adapter, AdapterPayload, ClientMetadata, Configuration } from "oidc-provider";
import * as oidc from "openid-client";
import { DPOP_ALGORITHMS } from "./dpop-verify.js";
import { createCookieJar } from "./headless-browser.js";

export const TEST_AUDIENCE = "urn:connect-oidc:test";
/** The scope the resource server grants; requested by default. */
export const TEST_API_SCOPE = "api";
export const TEST_ACCOUNT = "test-user";

export interface IdpOptions {
  /** Access token lifetime in seconds. Default 5. */
  readonly accessTokenTtl?: number;
  /** Refresh token lifetime in seconds. Default one day. */
  readonly refreshTokenTtl?: number;
  /**
   * Rotate refresh tokens on every refresh (default true, as oidc-provider does
   * for public clients). false: a refresh token stays valid and can be re-used.
   */
  readonly rotateRefreshTokens?: boolean;
  /** Account (JWT `sub`) that logins and device approvals sign in as. Default "test-user". */
  readonly accountId?: string;
  /**
   * `interval` (seconds) in device authorization responses. Default 1.
   * oidc-provider sends none, and openid-client then waits 5 s before every poll.
   */
  readonly deviceCodeInterval?: number;
  /**
   * Refuse an authorization request that asks for `openid` without a `nonce`, as some
   * providers do even in the code flow: oidc-provider redirects back with
   * `error=invalid_request`. Default false (oidc-provider requires a nonce only when an
   * ID token comes from the authorization endpoint).
   */
  readonly requireNonce?: boolean;
  /**
   * Register `test-cli-exact` (see `Idp.exactClientId`): a public client (PKCE, no secret)
   * allowing exactly these redirect URIs, e.g. `http://127.0.0.1:<port>/oauth/done`.
   * `application_type: "web"`: oidc-provider gives a native client any port on a loopback
   * redirect; a web client's must match character for character. Default: not registered.
   */
  readonly exactRedirectUris?: readonly string[];
  /**
   * The token endpoint's client authentication methods, as discovery lists them
   * (`token_endpoint_auth_methods_supported`). Default: oidc-provider's (basic, post,
   * private_key_jwt, none, ...). Clients registered with a method not listed are left out.
   */
  readonly clientAuthMethods?: readonly string[];
  /**
   * DPoP (RFC 9449) with server nonces: a token request that carries a `DPoP` proof gets a
   * DPoP-bound answer (`token_type: "DPoP"`, a JWT access token with `cnf.jkt`; a public
   * client's refresh token is bound to the same key). `requireNonce`: every proof must carry
   * the IdP's nonce; one without answers 400 `use_dpop_nonce` with a `DPoP-Nonce` header.
   * Default (no `dpop`): oidc-provider's defaults, no nonces — as before this option existed.
   */
  readonly dpop?: { readonly requireNonce?: boolean };
  /**
   * Opaque access tokens (not JWTs) for the test audience, and RFC 7662 introspection on
   * (`introspection_endpoint` in discovery), for resource servers that introspect. Default
   * false: JWT access tokens, no introspection.
   */
  readonly opaqueAccessTokens?: boolean;
}

export interface LoginOptions {
  /** Default "openid offline_access api". */
  readonly scope?: string;
  /** Default "http://127.0.0.1/callback"; any port works for loopback. */
  readonly redirectUri?: string;
  /** Sent as the `resource` parameter when given (the IdP defaults to the test audience). */
  readonly resource?: string;
  /**
   * Bind the login to this DPoP key: `dpop_jkt` in the authorization request and a proof on
   * the code exchange (openid-client's `getDPoPHandle`). Default: a bearer login.
   */
  readonly dpop?: oidc.DPoPHandle;
}

export type TokenResponse = oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers;

export interface IdpStats {
  /** Every POST to the token endpoint, whatever it answered (outages included). */
  tokenRequests: number;
  /** Token requests by `grant_type`; the device code grant is counted as `device_code`. */
  readonly byGrantType: {
    refresh_token: number;
    client_credentials: number;
    authorization_code: number;
    device_code: number;
    [grantType: string]: number;
  };
  /** Token endpoint answers with `error: "invalid_grant"`. */
  invalidGrant: number;
  /** Token endpoint answers forced by `setTokenOutage`. */
  outages: number;
  /** Every token endpoint error answer, by its `error` code. */
  readonly errors: Record<string, number>;
}

export interface TokenLatencyOptions {
  /**
   * "before" (default): wait, then process the request — if the client gave up
   * meanwhile the request is dropped unprocessed (a refresh token is not consumed).
   * "after": process at once, then hold the answer — a client that times out has
   * lost a rotated refresh token.
   */
  readonly phase?: "before" | "after";
}

export interface Idp {
  readonly issuer: string;
  readonly clientId: "test-cli";
  readonly serviceClient: { readonly clientId: "test-service"; readonly clientSecret: string };
  /** A confidential client on client_secret_post, whose secret holds characters Basic encodes (`-_.~`). */
  readonly postClient: { readonly clientId: "test-service-post"; readonly clientSecret: string };
  /** A confidential client on private_key_jwt: its private key (ES256) and key id. */
  readonly jwtClient: { readonly clientId: "test-service-jwt"; readonly privateKey: CryptoKey; readonly kid: string };
  /** The exact-redirect client; registered only when `IdpOptions.exactRedirectUris` is given. */
  readonly exactClientId: "test-cli-exact";
  readonly audience: string;
  readonly accountId: string;
  /** The JWKS URI (public keys), for resource servers. */
  readonly jwksUri: string;
  /** The provider instance, for tests that need more than the knobs below. */
  readonly provider: Provider;
  readonly stats: Readonly<IdpStats>;
  resetStats(): void;
  /** Headless authorization code + PKCE login of `test-cli` through openid-client. */
  login(options?: LoginOptions): Promise<TokenResponse>;
  /** openid-client Configuration for `test-cli` (discovery cached; insecure http allowed). */
  cliConfig(): Promise<oidc.Configuration>;
  /** openid-client Configuration for `test-service` (client_secret_basic). */
  serviceConfig(): Promise<oidc.Configuration>;
  /**
   * Approve a pending device authorization as the test account, through the real
   * /device pages (user code form, confirmation, interaction). After it resolves
   * the device code grant returns tokens.
   */
  approveDeviceCode(userCode: string): Promise<void>;
  /** Deny a pending device authorization (the device code grant answers access_denied). */
  denyDeviceCode(userCode: string): Promise<void>;
  /** Delay before (or after) the token endpoint answers. 0 = none. */
  setTokenLatency(ms: number, options?: TokenLatencyOptions): void;
  /**
   * Token endpoint answers this HTTP status with an OAuth error body; undefined = normal.
   * `answer` makes it answer as providers that bend RFC 6749 §5.2 do: `body` is sent as
   * is ("" = no body; an object as JSON), with `headers` (e.g. `retry-after`,
   * `www-authenticate`, `content-type: text/html`). The request is not processed.
   */
  setTokenOutage(status?: number, answer?: { readonly body?: string | object; readonly headers?: Record<string, string> }): void;
  /**
   * Injected fault on a real answer: the token endpoint processes the request as usual
   * (a refresh token is consumed and rotated), then `rewrite` changes the successful
   * JSON body it sends (e.g. a negative `expires_in`). undefined = normal.
   */
  rewriteTokenResponse(rewrite?: (body: Record<string, unknown>) => Record<string, unknown>): void;
  /**
   * A transport fault on the token endpoint, after the request was processed (a refresh
   * token is consumed): "reset-mid-body" sends the status line, headers and half the body,
   * then destroys the socket; "malformed-json" sends 200 with a body cut short. undefined = normal.
   */
  setTokenTransportFault(fault?: "reset-mid-body" | "malformed-json"): void;
  /**
   * Kill grants: with a refresh token, the grant it belongs to; without, every
   * grant issued so far. Their refresh tokens then answer `invalid_grant`.
   */
  revokeGrant(refreshToken?: string): Promise<void>;
  close(): Promise<void>;
}

type ProviderModule = typeof import("oidc-provider");
let providerModule: Promise<ProviderModule> | undefined;

/** Imports oidc-provider once, without its "Unsupported runtime" line on Node 20. */
function loadProvider(): Promise<ProviderModule> {
  providerModule ??= (async () => {
    const warn = console.warn;
    console.warn = (...args: unknown[]) => {
      if (typeof args[0] === "string" && args[0].includes("Unsupported runtime")) return;
      warn.apply(console, args);
    };
    try {
      return await import("oidc-provider");
    } finally {
      console.warn = warn;
    }
  })();
  return providerModule;
}

/** Map-backed storage, one per IdP, unbounded (the built-in one is a shared 1000-entry LRU). */
function createAdapterFactory() {
  const entries = new Map<string, { payload: AdapterPayload; expiresAt: number }>();
  const byGrant = new Map<string, Set<string>>();
  const byUserCode = new Map<string, string>();
  const byUid = new Map<string, string>();

  const get = (key: string | undefined): AdapterPayload | undefined => {
    if (key === undefined) return undefined;
    const entry = entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now()) {
      entries.delete(key);
      return undefined;
    }
    return entry.payload;
  };

  const factory = (model: string): Adapter => {
    const key = (id: string) => `${model}:${id}`;
    return {
      async upsert(id, payload, expiresIn) {
        const expiresAt = expiresIn ? Date.now() + expiresIn * 1000 : Number.POSITIVE_INFINITY;
        entries.set(key(id), { payload, expiresAt });
        if (payload.grantId) {
          let keys = byGrant.get(payload.grantId);
          if (!keys) {
            keys = new Set();
            byGrant.set(payload.grantId, keys);
          }
          keys.add(key(id));
        }
        if (payload.userCode) byUserCode.set(payload.userCode, key(id));
        if (model === "Session" && payload.uid) byUid.set(payload.uid, key(id));
      },
      async find(id) {
        return get(key(id));
      },
      async findByUserCode(userCode) {
        return get(byUserCode.get(userCode));
      },
      async findByUid(uid) {
        return get(byUid.get(uid));
      },
      async consume(id) {
        const payload = get(key(id));
        if (payload) payload.consumed = Math.floor(Date.now() / 1000);
      },
      async destroy(id) {
        entries.delete(key(id));
      },
      async revokeByGrantId(grantId) {
        for (const k of byGrant.get(grantId) ?? []) entries.delete(k);
        byGrant.delete(grantId);
      },
    };
  };

  const grantIds = () => [...entries.keys()].filter((k) => k.startsWith("Grant:")).map((k) => k.slice("Grant:".length));

  return { factory, grantIds };
}

/** A minimal cookie jar + redirect follower: enough to drive oidc-provider's pages. */
function createBrowser() {
  const jar = createCookieJar();

  const request = async (url: string, init: RequestInit = {}) => {
    const headers = new Headers(init.headers);
    jar.addTo(headers);
    const res = await fetch(url, { ...init, headers, redirect: "manual" });
    jar.store(res);
    return res;
  };

  /**
   * Request, then follow redirects until a 2xx page (returned) or a Location that
   * starts with `stopAt` (returned as a URL, not requested).
   */
  const navigate = async (url: string, init: RequestInit = {}, stopAt?: string): Promise<{ url: URL } | { page: Response; url: URL }> => {
    let current = new URL(url);
    let res = await request(current.href, init);
    for (let hops = 0; hops < 20; hops++) {
      const location = res.headers.get("location");
      if (res.status < 300 || res.status >= 400 || !location) {
        if (!res.ok) {
          const body = await res.text();
          throw new Error(`${init.method ?? "GET"} ${current.pathname}: HTTP ${res.status} ${body.slice(0, 300)}`);
        }
        return { page: res, url: current };
      }
      await res.body?.cancel();
      current = new URL(location, current);
      if (stopAt && current.href.startsWith(stopAt)) return { url: current };
      res = await request(current.href);
    }
    throw new Error("too many redirects");
  };

  return { navigate };
}

/** The hidden inputs and action of the first form in an oidc-provider page. */
function parseForm(html: string, base: URL): { action: URL; fields: URLSearchParams } {
  const decodeEntities = (s: string) =>
    s
      .replace(/&quot;/g, '"')
      .replace(/&#x27;|&#39;/g, "'")
      .replace(/&lt;/g, "<")
      .replace(/&gt;/g, ">")
      .replace(/&amp;/g, "&");
  const form = /<form[^>]*action="([^"]*)"/i.exec(html);
  if (!form) throw new Error(`no form in page: ${html.slice(0, 300)}`);
  const fields = new URLSearchParams();
  for (const m of html.matchAll(/<input[^>]*type="hidden"[^>]*>/gi)) {
    const name = /name="([^"]*)"/.exec(m[0])?.[1];
    const value = /value="([^"]*)"/.exec(m[0])?.[1] ?? "";
    if (name) fields.append(decodeEntities(name), decodeEntities(value));
  }
  return { action: new URL(decodeEntities(form[1] ?? ""), base), fields };
}

async function readForm(req: http.IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
}

function grantTypeLabel(grantType: unknown): string {
  if (typeof grantType !== "string" || grantType === "") return "(none)";
  return grantType === "urn:ietf:params:oauth:grant-type:device_code" ? "device_code" : grantType;
}

function emptyStats(): IdpStats {
  return {
    tokenRequests: 0,
    byGrantType: { refresh_token: 0, client_credentials: 0, authorization_code: 0, device_code: 0 },
    invalidGrant: 0,
    outages: 0,
    errors: {},
  };
}

export async function startIdp(options: IdpOptions = {}): Promise<Idp> {
  const { default: ProviderClass, errors } = await loadProvider();
  const accessTokenTtl = options.accessTokenTtl ?? 5;
  const refreshTokenTtl = options.refreshTokenTtl ?? 24 * 60 * 60;
  const accountId = options.accountId ?? TEST_ACCOUNT;
  const clientId = "test-cli" as const;
  const exactClientId = "test-cli-exact" as const;
  const serviceClient = {
    clientId: "test-service" as const,
    clientSecret: randomBytes(24).toString("base64url"),
  };

  const postClient = {
    clientId: "test-service-post" as const,
    clientSecret: `a-b_c.d~e-${randomBytes(12).toString("base64url")}`,
  };
  const jwtKeys = await generateKeyPair("ES256", { extractable: true });
  const jwtClient = { clientId: "test-service-jwt" as const, privateKey: jwtKeys.privateKey, kid: randomUUID() };
  const methods = options.clientAuthMethods;
  const allowed = (method: string) => methods === undefined || methods.includes(method);

  const { privateKey } = await generateKeyPair("RS256", { extractable: true });
  const signingKey = { ...(await exportJWK(privateKey)), kid: randomUUID(), alg: "RS256", use: "sig" };

  // The issuer needs the port: listen first, then build the provider.
  let handler: http.RequestListener = (_req, res) => {
    res.statusCode = 503;
    res.end();
  };
  const server = http.createServer((req, res) => handler(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const issuer = `http://127.0.0.1:${port}`;

  const adapter = createAdapterFactory();
  const ttl = () => accessTokenTtl;

  const configuration: Configuration = {
    adapter: adapter.factory,
    jwks: { keys: [signingKey] },
    cookies: { keys: [randomBytes(32).toString("base64url")] },
    clients: [
      {
        client_id: clientId,
        application_type: "native",
        token_endpoint_auth_method: "none",
        grant_types: ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"],
        response_types: ["code"],
        redirect_uris: ["http://127.0.0.1/callback"],
      },
      ...(allowed("client_secret_basic")
        ? [
            {
              client_id: serviceClient.clientId,
              client_secret: serviceClient.clientSecret,
              token_endpoint_auth_method: "client_secret_basic",
              grant_types: ["client_credentials"],
              response_types: [],
              redirect_uris: [],
            } satisfies ClientMetadata,
          ]
        : []),
      ...(allowed("client_secret_post")
        ? [
            {
              client_id: postClient.clientId,
              client_secret: postClient.clientSecret,
              token_endpoint_auth_method: "client_secret_post",
              grant_types: ["client_credentials"],
              response_types: [],
              redirect_uris: [],
            } satisfies ClientMetadata,
          ]
        : []),
      ...(allowed("private_key_jwt")
        ? [
            {
              client_id: jwtClient.clientId,
              token_endpoint_auth_method: "private_key_jwt",
              token_endpoint_auth_signing_alg: "ES256",
              jwks: { keys: [{ ...(await exportJWK(jwtKeys.publicKey)), kid: jwtClient.kid, alg: "ES256", use: "sig" }] },
              grant_types: ["client_credentials"],
              response_types: [],
              redirect_uris: [],
            } satisfies ClientMetadata,
          ]
        : []),
      ...(options.exactRedirectUris === undefined
        ? []
        : [
            {
              client_id: exactClientId,
              application_type: "web",
              token_endpoint_auth_method: "none",
              grant_types: ["authorization_code", "refresh_token"],
              response_types: ["code"],
              redirect_uris: [...options.exactRedirectUris],
            } satisfies ClientMetadata,
          ]),
    ],
    ...(methods !== undefined ? { clientAuthMethods: [...methods] as Configuration["clientAuthMethods"] } : {}),
    scopes: ["openid", "offline_access"],
    // A validator on a standard parameter runs inside the authorization endpoint, after the
    // redirect URI is checked: what it throws is redirected back to the client.
    ...(options.requireNonce
      ? {
          extraParams: {
            nonce: (ctx, value) => {
              if (ctx.oidc.route !== "authorization") return;
              const scope = String(ctx.oidc.params?.scope ?? "").split(" ");
              if (scope.includes("openid") && !value) throw new errors.InvalidRequest("nonce is required with the openid scope");
            },
          },
        }
      : {}),
    ...(options.dpop
      ? { enabledJWA: { dPoPSigningAlgValues: [...DPOP_ALGORITHMS] as NonNullable<Configuration["enabledJWA"]>["dPoPSigningAlgValues"] } }
      : {}),
    pkce: { required: () => true },
    findAccount: async (_ctx, id) => ({ accountId: id, claims: () => ({ sub: id }) }),
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed("refresh_token"),
    rotateRefreshToken: options.rotateRefreshTokens ?? true,
    // Refresh tokens outlive the browser session, with or without offline_access.
    expiresWithSession: async () => false,
    clientBasedCORS: () => true,
    renderError: async (ctx, out) => {
      ctx.type = "json";
      ctx.body = out;
    },
    ttl: {
      AccessToken: ttl,
      ClientCredentials: ttl,
      IdToken: 3600,
      RefreshToken: () => refreshTokenTtl,
      Grant: refreshTokenTtl,
      Session: refreshTokenTtl,
      Interaction: 600,
      DeviceCode: 600,
      AuthorizationCode: 60,
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      ...(options.dpop
        ? {
            dPoP: {
              enabled: true,
              nonceSecret: randomBytes(32),
              requireNonce: () => options.dpop?.requireNonce === true,
            },
          }
        : {}),
      revocation: { enabled: true, allowedPolicy: async () => true },
      introspection: { enabled: options.opaqueAccessTokens === true },
      deviceFlow: {
        enabled: true,
        // Bare forms: approveDeviceCode reads their hidden inputs.
        userCodeInputSource: async (ctx, form) => {
          ctx.body = `<!DOCTYPE html><html><body>${form}</body></html>`;
        },
        userCodeConfirmSource: async (ctx, form) => {
          ctx.body = `<!DOCTYPE html><html><body>${form}</body></html>`;
        },
        successSource: async (ctx) => {
          ctx.body = "<!DOCTYPE html><html><body>device approved</body></html>";
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => TEST_AUDIENCE,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, resourceIndicator) => {
          if (resourceIndicator !== TEST_AUDIENCE) throw new errors.InvalidTarget();
          return {
            scope: TEST_API_SCOPE,
            audience: TEST_AUDIENCE,
            accessTokenTTL: accessTokenTtl,
            ...(options.opaqueAccessTokens
              ? { accessTokenFormat: "opaque" }
              : { accessTokenFormat: "jwt", jwt: { sign: { alg: "RS256" } } }),
          };
        },
      },
    },
  };

  const provider = new ProviderClass(issuer, configuration);

  // ---- token endpoint knobs and counters ----
  let stats = emptyStats();
  let latencyMs = 0;
  let latencyPhase: "before" | "after" = "before";
  let outageStatus: number | undefined;
  let outageAnswer: { readonly body?: string | object; readonly headers?: Record<string, string> } | undefined;
  let rewriteBody: ((body: Record<string, unknown>) => Record<string, unknown>) | undefined;
  let transportFault: "reset-mid-body" | "malformed-json" | undefined;

  const countError = (error: unknown) => {
    if (typeof error !== "string") return;
    stats.errors[error] = (stats.errors[error] ?? 0) + 1;
    if (error === "invalid_grant") stats.invalidGrant++;
  };
  const countGrantType = (grantType: unknown) => {
    const label = grantTypeLabel(grantType);
    stats.byGrantType[label] = (stats.byGrantType[label] ?? 0) + 1;
  };

  /** Waits `ms`; false when the client went away meanwhile. */
  const waitUnlessGone = async (ctx: { readonly res: http.ServerResponse }, ms: number): Promise<boolean> => {
    if (ms <= 0) return true;
    const gone = new AbortController();
    const onClose = () => {
      if (!ctx.res.writableEnded) gone.abort();
    };
    ctx.res.once("close", onClose);
    try {
      await sleep(ms, undefined, { signal: gone.signal });
      return true;
    } catch {
      return false;
    } finally {
      ctx.res.off("close", onClose);
    }
  };

  const deviceAuthorizationPath = new URL(provider.urlFor("device_authorization")).pathname;
  const deviceCodeInterval = options.deviceCodeInterval ?? 1;
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.path === deviceAuthorizationPath && ctx.status === 200 && ctx.body && typeof ctx.body === "object") {
      (ctx.body as { interval?: number }).interval = deviceCodeInterval;
    }
  });

  const tokenPath = new URL(provider.urlFor("token")).pathname;
  provider.use(async (ctx, next) => {
    if (ctx.path !== tokenPath || ctx.method !== "POST") return next();
    stats.tokenRequests++;

    if (latencyPhase === "before" && !(await waitUnlessGone(ctx, latencyMs))) {
      ctx.respond = false;
      ctx.res.destroy();
      return;
    }

    if (outageStatus !== undefined) {
      const form = await readForm(ctx.req);
      countGrantType(form.get("grant_type"));
      stats.outages++;
      const error = outageStatus === 429 ? "slow_down" : outageStatus >= 500 ? "temporarily_unavailable" : "invalid_request";
      countError(error);
      ctx.status = outageStatus;
      ctx.set("cache-control", "no-store");
      if (outageAnswer !== undefined) {
        for (const [name, value] of Object.entries(outageAnswer.headers ?? {})) ctx.set(name, value);
        const body = outageAnswer.body ?? "";
        ctx.body = body === "" ? "" : body;
        if (body === "") ctx.remove("content-type");
        return;
      }
      if (outageStatus === 429 || outageStatus === 503) ctx.set("retry-after", "1");
      ctx.body = { error, error_description: `test outage (HTTP ${outageStatus})` };
      return;
    }

    await next();
    const params = ctx.oidc?.params as Record<string, unknown> | undefined;
    const body = ctx.oidc?.body as Record<string, unknown> | undefined;
    countGrantType(params?.grant_type ?? body?.grant_type);
    const answer = ctx.body as { error?: unknown } | undefined;
    if (answer && typeof answer === "object" && !Buffer.isBuffer(answer)) countError(answer.error);
    if (rewriteBody && ctx.status === 200 && answer && typeof answer === "object" && !Buffer.isBuffer(answer)) {
      ctx.body = rewriteBody({ ...(answer as Record<string, unknown>) });
    }
    if (transportFault !== undefined && ctx.status === 200) {
      const text = JSON.stringify(ctx.body);
      const half = text.slice(0, Math.floor(text.length / 2));
      if (transportFault === "malformed-json") {
        ctx.type = "application/json";
        ctx.body = half;
        return;
      }
      ctx.respond = false;
      ctx.res.writeHead(200, { "content-type": "application/json", "content-length": String(Buffer.byteLength(text)) });
      ctx.res.write(half, () => ctx.res.destroy());
      return;
    }

    if (latencyPhase === "after") await waitUnlessGone(ctx, latencyMs);
  });

  // ---- headless interactions: sign in as the test account and consent to everything asked ----
  const interactionPrefix = "/interaction/";
  const koaCallback = provider.callback();

  const finishInteraction = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const details = await provider.interactionDetails(req, res);
    const detailClientId = String(details.params.client_id);
    const grant = details.grantId
      ? ((await provider.Grant.find(details.grantId)) ?? new provider.Grant({ accountId, clientId: detailClientId }))
      : new provider.Grant({ accountId, clientId: detailClientId });

    const promptDetails = details.prompt.details as {
      missingOIDCScope?: string[];
      missingOIDCClaims?: string[];
      missingResourceScopes?: Record<string, string[]>;
    };
    grant.addOIDCScope(["openid", "offline_access", ...(promptDetails.missingOIDCScope ?? [])]);
    if (promptDetails.missingOIDCClaims?.length) grant.addOIDCClaims(promptDetails.missingOIDCClaims);
    grant.addResourceScope(TEST_AUDIENCE, TEST_API_SCOPE);
    for (const [indicator, scopes] of Object.entries(promptDetails.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(" "));
    }
    const grantId = await grant.save();

    await provider.interactionFinished(req, res, { login: { accountId }, consent: { grantId } }, { mergeWithLastSubmission: false });
  };

  handler = (req, res) => {
    if (req.url?.startsWith(interactionPrefix)) {
      finishInteraction(req, res).catch((err: unknown) => {
        if (!res.headersSent) {
          res.statusCode = 500;
          res.setHeader("content-type", "text/plain");
        }
        res.end(`interaction failed: ${err instanceof Error ? err.message : String(err)}`);
      });
      return;
    }
    koaCallback(req, res);
  };

  // ---- openid-client side ----
  let cliConfig: Promise<oidc.Configuration> | undefined;
  let serviceConfig: Promise<oidc.Configuration> | undefined;
  const discoveryOptions = { execute: [oidc.allowInsecureRequests] };
  const getCliConfig = () => (cliConfig ??= oidc.discovery(new URL(issuer), clientId, undefined, oidc.None(), discoveryOptions));
  const getServiceConfig = () =>
    (serviceConfig ??= oidc.discovery(
      new URL(issuer),
      serviceClient.clientId,
      undefined,
      oidc.ClientSecretBasic(serviceClient.clientSecret),
      discoveryOptions,
    ));

  const login = async (loginOptions: LoginOptions = {}): Promise<TokenResponse> => {
    const config = await getCliConfig();
    const redirectUri = loginOptions.redirectUri ?? "http://127.0.0.1/callback";
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const scope = loginOptions.scope ?? `openid offline_access ${TEST_API_SCOPE}`;
    const nonce = scope.split(" ").includes("openid") ? oidc.randomNonce() : undefined;
    const parameters: Record<string, string> = {
      redirect_uri: redirectUri,
      scope,
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: "S256",
      state,
      // oidc-provider drops offline_access from an authorization request without prompt=consent.
      prompt: "consent",
    };
    if (loginOptions.resource) parameters.resource = loginOptions.resource;
    if (nonce !== undefined) parameters.nonce = nonce;
    if (loginOptions.dpop) parameters.dpop_jkt = await loginOptions.dpop.calculateThumbprint();
    const authorizationUrl = oidc.buildAuthorizationUrl(config, parameters);

    const browser = createBrowser();
    const result = await browser.navigate(authorizationUrl.href, {}, redirectUri);
    if ("page" in result) {
      throw new Error(`login ended on a page instead of the redirect: ${(await result.page.text()).slice(0, 300)}`);
    }
    return oidc.authorizationCodeGrant(
      config,
      result.url,
      {
        pkceCodeVerifier: verifier,
        expectedState: state,
        ...(nonce !== undefined ? { expectedNonce: nonce } : {}),
      },
      undefined,
      loginOptions.dpop ? { DPoP: loginOptions.dpop } : undefined,
    );
  };

  const deviceDecision = async (userCode: string, decision: "confirm" | "abort") => {
    const browser = createBrowser();
    const verification = new URL(provider.urlFor("code_verification"));
    // GET /device?user_code=… answers an auto-submitting form carrying the xsrf token.
    const first = await browser.navigate(`${verification.href}?user_code=${encodeURIComponent(userCode)}`);
    if (!("page" in first)) throw new Error("device flow: unexpected redirect");
    const entry = parseForm(await first.page.text(), first.url);
    const confirmPage = await browser.navigate(entry.action.href, { method: "POST", body: entry.fields });
    if (!("page" in confirmPage)) throw new Error("device flow: unexpected redirect");
    const html = await confirmPage.page.text();
    if (!html.includes('name="confirm"')) throw new Error(`device flow: no confirmation form: ${html.slice(0, 300)}`);
    const confirm = parseForm(html, confirmPage.url);
    if (decision === "abort") {
      confirm.fields.delete("confirm");
      confirm.fields.set("abort", "yes");
    }
    // confirm → authorization → /interaction/:uid (auto-approved) → resume → success page.
    const done = await browser.navigate(confirm.action.href, { method: "POST", body: confirm.fields }).catch((err: unknown) => {
      // An aborted device flow answers an error page (400); that is the expected end.
      if (decision === "abort") return undefined;
      throw err;
    });
    if (decision === "confirm") {
      if (!done || !("page" in done)) throw new Error("device flow: did not reach the success page");
      const text = await done.page.text();
      if (!text.includes("device approved")) throw new Error(`device flow: unexpected page: ${text.slice(0, 300)}`);
    } else if (done && "page" in done) {
      await done.page.body?.cancel();
    }
  };

  const revokeGrant = async (refreshToken?: string) => {
    let grantIds: string[];
    if (refreshToken !== undefined) {
      const token = await provider.RefreshToken.find(refreshToken, { ignoreExpiration: true });
      grantIds = token?.grantId ? [token.grantId] : [];
    } else {
      grantIds = adapter.grantIds();
    }
    for (const grantId of grantIds) {
      await Promise.all([
        provider.AccessToken.revokeByGrantId(grantId),
        provider.RefreshToken.revokeByGrantId(grantId),
        provider.AuthorizationCode.revokeByGrantId(grantId),
        provider.DeviceCode.revokeByGrantId(grantId),
        provider.Grant.adapter.destroy(grantId),
      ]);
    }
  };

  let closed: Promise<void> | undefined;
  const close = () =>
    (closed ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }));

  return {
    issuer,
    clientId,
    serviceClient,
    postClient,
    jwtClient,
    exactClientId,
    audience: TEST_AUDIENCE,
    accountId,
    jwksUri: new URL(provider.urlFor("jwks")).href,
    provider,
    get stats() {
      return stats;
    },
    resetStats() {
      stats = emptyStats();
    },
    login,
    cliConfig: getCliConfig,
    serviceConfig: getServiceConfig,
    approveDeviceCode: (userCode) => deviceDecision(userCode, "confirm"),
    denyDeviceCode: (userCode) => deviceDecision(userCode, "abort"),
    setTokenLatency(ms, latencyOptions) {
      latencyMs = ms;
      latencyPhase = latencyOptions?.phase ?? "before";
    },
    setTokenOutage(status, answer) {
      outageStatus = status;
      outageAnswer = answer;
    },
    rewriteTokenResponse(rewrite) {
      rewriteBody = rewrite;
    },
    setTokenTransportFault(fault) {
      transportFault = fault;
    },
    revokeGrant,
    close,
  };
}
