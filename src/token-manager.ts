/**
 * The token manager: holds the current login, hands out valid access tokens,
 * refreshes them in the background before they expire, and shares one refresh
 * among concurrent callers (and, through the store's lock, among processes).
 */
import { abortable } from "./abortable.js";
import { systemClock } from "./clock.js";
import { ConfigurationError, ConnectOidcError, ReauthRequiredError, TokenRefreshError } from "./errors.js";
import { describeFailure, failureFacts } from "./failure.js";
import { createOidcAdapter, type OidcAdapter } from "./oidc.js";
import { backoffDelay, DEFAULT_REFRESH_WINDOW_MS, isTerminal, isUsable, refreshAt, tokenTimes } from "./policy.js";
import { createSingleFlight } from "./single-flight.js";
import { memoryStore } from "./memory-store.js";
import type { Clock, RefreshReason, StoredTokens, TokenEndpointResponse, TokenEvent, TokenProvider, TokenStore } from "./types.js";

export interface TokenManagerOptions {
  /** Issuer URL; discovery through openid-client happens once. */
  readonly issuer: string | URL;
  readonly clientId: string;
  /** For confidential clients (client_secret_basic). */
  readonly clientSecret?: string;
  /** Default "refresh_token". */
  readonly grant?: "refresh_token" | "client_credentials";
  /** Sent with refresh and client_credentials requests. */
  readonly scope?: string;
  readonly resource?: string;
  /** Default memoryStore(). */
  readonly store?: TokenStore;
  /** Default 15 min; the effective window is min(this, 25 % of the token's lifetime). */
  readonly refreshWindowMs?: number;
  /** Each token-endpoint request; default 10 s. */
  readonly timeoutMs?: number;
  /** Allow an http:// issuer: loopback development and tests only. */
  readonly allowInsecureRequests?: boolean;
  readonly onEvent?: (event: TokenEvent) => void;
  /** Time source, for tests that drive hours in milliseconds. Default: the system clock. */
  readonly clock?: Clock;
  /** Random source in [0, 1) for backoff jitter. Default Math.random. */
  readonly random?: () => number;
  /** Backoff after transient failures; defaults 1 s doubling to 60 s. */
  readonly backoff?: { readonly baseMs?: number; readonly maxMs?: number };
  /** @internal Replace the openid-client adapter (fault injection in tests). */
  readonly oidc?: OidcAdapter;
}

export interface TokenManager extends TokenProvider, Disposable {
  /** Adopt the result of a login; persisted to the store. */
  setTokens(response: TokenEndpointResponse): Promise<void>;
  /** Forget the login and clear the store. */
  signOut(): Promise<void>;
  /** Stop timers. */
  close(): void;
}

// A manager in "reauth required" state looks at the store at most this often for a
// login another process made; it never asks the identity provider.
const REAUTH_RECHECK_MS = 1000;

// A token fetched because a server refused the previous one, and refused again this soon,
// is not replaced again: the server refuses every token (wrong audience, broken clock), and
// refreshing on every call would only hammer the identity provider.
const FORCED_REFRESH_COOLDOWN_MS = 10_000;

/** A refresh's result: tokens from the identity provider, or adopted from the store. */
interface Outcome {
  readonly tokens: StoredTokens;
  readonly adopted: boolean;
}

/**
 * A token manager: hands out a valid access token at once, refreshes it in the background
 * before it expires (when min(refreshWindowMs, 25 % of its lifetime) remains), shares one
 * refresh among concurrent callers and — through the store's lock — among processes,
 * backs off when the identity provider is down, and stops asking it once the refresh token
 * is dead (`reauth-required`, then `ReauthRequiredError` until `setTokens`).
 *
 * @example
 * ```ts
 * import { createTokenManager } from "connect-oidc";
 * import { keyringStore, loginWithBrowser } from "connect-oidc/node";
 *
 * const tokens = createTokenManager({
 *   issuer: "https://login.example.com",
 *   clientId: "my-cli",
 *   store: keyringStore({ service: "my-cli", account: "default" }),
 *   onEvent: (e) => e.type === "refreshed" && console.error(`✓ Token refreshed (${e.reason})`),
 * });
 * try {
 *   await tokens.getAccessToken();
 * } catch {
 *   await tokens.setTokens(await loginWithBrowser({ issuer: "https://login.example.com", clientId: "my-cli" }));
 * }
 * ```
 */
export function createTokenManager(options: TokenManagerOptions): TokenManager {
  if (options.issuer === undefined || options.issuer === "") throw new ConfigurationError("createTokenManager: `issuer` is required");
  if (typeof options.clientId !== "string" || options.clientId === "")
    throw new ConfigurationError("createTokenManager: `clientId` is required");
  let issuerUrl: URL;
  try {
    issuerUrl = new URL(options.issuer);
  } catch (cause) {
    throw new ConfigurationError("createTokenManager: `issuer` is not a valid URL", { cause });
  }
  if (issuerUrl.protocol === "http:" && !options.allowInsecureRequests) {
    throw new ConfigurationError(
      "createTokenManager: an http:// issuer needs `allowInsecureRequests: true` (loopback development and tests only)",
    );
  }
  const grant = options.grant ?? "refresh_token";
  if (grant !== "refresh_token" && grant !== "client_credentials") {
    throw new ConfigurationError(`createTokenManager: unknown grant ${JSON.stringify(grant)}`);
  }
  for (const [name, value, min] of [
    ["refreshWindowMs", options.refreshWindowMs, 0],
    ["timeoutMs", options.timeoutMs, 1],
  ] as const) {
    if (value !== undefined && !(typeof value === "number" && Number.isFinite(value) && value >= min)) {
      throw new ConfigurationError(`createTokenManager: \`${name}\` must be a number of milliseconds ≥ ${min}`);
    }
  }
  const issuer = issuerUrl.href.replace(/\/$/, "");
  const clientId = options.clientId;
  const store = options.store ?? memoryStore();
  const clock = options.clock ?? systemClock;
  const random = options.random ?? Math.random;
  const windowMs = options.refreshWindowMs ?? DEFAULT_REFRESH_WINDOW_MS;
  const adapter = options.oidc ?? createOidcAdapter({ ...options, issuer });
  const flight = createSingleFlight<StoredTokens>();

  let current: StoredTokens | undefined;
  let loading: Promise<void> | undefined;
  let loaded = false;
  // "startup": the first refresh of a login loaded from the store when the manager started.
  let startup = false;
  // Bumped by setTokens and signOut, so a refresh that started before does not overwrite them.
  let generation = 0;
  let failures = 0;
  let retryAt: number | undefined;
  let lastFailure: TokenRefreshError | undefined;
  let reauth: ReauthRequiredError | undefined;
  let reauthCheckedAt = 0;
  // A token a server refused: not handed out again while its replacement is fetched.
  let refused: string | undefined;
  let forced: { token: string; at: number } | undefined;
  let timer: unknown;
  let closed = false;

  const emit = (event: TokenEvent) => {
    try {
      options.onEvent?.(event);
    } catch {
      // A listener's failure must not break token handling.
    }
  };

  const ours = (t: StoredTokens | undefined): StoredTokens | undefined =>
    t !== undefined && t.issuer.replace(/\/$/, "") === issuer && t.clientId === clientId ? t : undefined;

  const usable = (t: StoredTokens | undefined, now: number): t is StoredTokens & { accessToken: string } =>
    t?.accessToken !== undefined && t.issuedAt !== undefined && t.expiresAt !== undefined && isUsable(t as Required<StoredTokens>, now);

  const refreshTime = (t: StoredTokens) =>
    t.issuedAt !== undefined && t.expiresAt !== undefined ? refreshAt(t as Required<StoredTokens>, windowMs) : -Infinity;

  // Newer: issued later than what this process holds (processes on one machine share a clock).
  // Or the same login with its refresh token removed: another process found it dead.
  const newer = (stored: StoredTokens | undefined, than: StoredTokens | undefined) =>
    stored !== undefined &&
    (than === undefined ||
      ((stored.issuedAt ?? 0) > (than.issuedAt ?? 0) &&
        (stored.accessToken !== than.accessToken || stored.refreshToken !== than.refreshToken)) ||
      (stored.accessToken === than.accessToken && stored.refreshToken === undefined && than.refreshToken !== undefined));

  const ensureLoaded = async () => {
    if (loaded) return;
    loading ??= (async () => {
      const gen = generation;
      const stored = ours(await store.load());
      if (gen === generation && !loaded) {
        current = stored;
        startup = true;
        loaded = true;
        schedule();
      }
    })().finally(() => {
      loading = undefined;
    });
    await loading;
  };

  const schedule = () => {
    if (timer !== undefined) clock.clearTimeout(timer);
    timer = undefined;
    if (closed || reauth !== undefined || current === undefined) return;
    const at = retryAt ?? refreshTime(current);
    timer = clock.setTimeout(onTimer, Math.max(0, at - clock.now()));
  };

  const onTimer = () => {
    timer = undefined;
    if (closed || reauth !== undefined || current === undefined) return;
    const now = clock.now();
    if (retryAt !== undefined && now < retryAt) return schedule();
    if (now < refreshTime(current)) return schedule();
    const reason: RefreshReason = usable(current, now) ? "proactive" : "expired";
    refresh(reason).catch(() => {
      // Reported through events; callers see it on their next call.
    });
  };

  const fromResponse = (response: TokenEndpointResponse, sentAt: number, previousRefreshToken?: string): StoredTokens => {
    const times = tokenTimes(sentAt, response.expires_in);
    const refreshToken = response.refresh_token ?? previousRefreshToken;
    return {
      version: 1,
      issuer,
      clientId,
      accessToken: response.access_token,
      ...(refreshToken !== undefined ? { refreshToken } : {}),
      issuedAt: times.issuedAt,
      expiresAt: times.expiresAt,
      ...(typeof response.scope === "string" ? { scope: response.scope } : {}),
    };
  };

  const enterReauth = (error: ReauthRequiredError) => {
    const first = reauth === undefined;
    reauth = error;
    reauthCheckedAt = clock.now();
    schedule();
    if (first) emit({ type: "reauth-required", error });
    return error;
  };

  const noRefreshToken = () =>
    new ReauthRequiredError(
      `The login of client "${clientId}" at ${issuer} has no usable refresh token (the identity provider refused it, or never issued one): log in again and pass the result to setTokens()`,
    );

  const noLogin = () =>
    new ReauthRequiredError(
      `No login found for client "${clientId}" at ${issuer}: log in (loginWithBrowser or loginWithDeviceCode) and pass the result to setTokens()`,
    );

  /** The refresh itself, run under the store's lock: re-read, maybe adopt, else ask the IdP, then save. */
  const exchange = async (reason: RefreshReason, rejected: string | undefined): Promise<Outcome> => {
    const gen = generation;
    let holding = current;
    const stored = ours(await store.load());
    const adoptable = (t: StoredTokens | undefined, now: number) =>
      newer(t, holding) && usable(t, now) && t.accessToken !== rejected && (reason !== "proactive" || now < refreshTime(t));
    if (adoptable(stored, clock.now())) return adopt(stored!, gen);
    // Another process rotated the refresh token: use the live one.
    if (newer(stored, holding)) holding = stored;
    const request = async (base: StoredTokens | undefined) => {
      const sentAt = clock.now();
      if (grant === "client_credentials") return fromResponse(await adapter.clientCredentials(), sentAt);
      const refreshToken = base?.refreshToken;
      if (refreshToken === undefined) throw base?.accessToken === undefined ? noLogin() : noRefreshToken();
      return fromResponse(await adapter.refresh(refreshToken), sentAt, refreshToken);
    };
    let next: StoredTokens;
    try {
      next = await request(holding);
    } catch (error) {
      if (error instanceof ReauthRequiredError || !isTerminal(failureFacts(error))) throw error;
      // Terminal: another process may have rotated the token in between. Look once more.
      const again = ours(await store.load());
      if (newer(again, holding) && again?.refreshToken !== holding?.refreshToken) {
        if (adoptable(again, clock.now())) return adopt(again!, gen);
        next = await request(again);
      } else {
        // Tell the other processes: the refresh token is dead. They then stop without asking
        // the identity provider (which would count each of them as another invalid_grant).
        if (holding?.refreshToken !== undefined && again?.refreshToken === holding.refreshToken) {
          const { refreshToken: _dead, ...withoutRefreshToken } = holding;
          await store.save(withoutRefreshToken).catch(() => {});
        }
        throw error;
      }
    }
    if (gen === generation) {
      // Memory first: if the save fails, this process still holds the live refresh token
      // and goes on with it; the failure is reported (other processes cannot see it).
      current = next;
      try {
        await store.save(next);
      } catch (error) {
        emit({ type: "refresh-failed", error: error instanceof Error ? error : new Error(String(error)), terminal: false });
      }
    }
    return { tokens: next, adopted: false };
  };

  const adopt = (tokens: StoredTokens, gen: number): Outcome => {
    if (gen === generation) {
      current = tokens;
      emit({ type: "adopted", expiresAt: tokens.expiresAt! });
    }
    return { tokens, adopted: true };
  };

  const refresh = (reason: RefreshReason, rejected?: string): Promise<StoredTokens> =>
    flight.run(async () => {
      const gen = generation;
      try {
        const { tokens, adopted } = await locked(() => exchange(reason, rejected));
        if (gen === generation) {
          failures = 0;
          retryAt = undefined;
          lastFailure = undefined;
          startup = false;
          if (!adopted) emit({ type: "refreshed", reason, expiresAt: tokens.expiresAt! });
          if (reason === "rejected" && tokens.accessToken !== undefined) forced = { token: tokens.accessToken, at: clock.now() };
          schedule();
        }
        return tokens;
      } catch (error) {
        if (gen !== generation) throw error;
        throw fail(error);
      }
    });

  const fail = (error: unknown): Error => {
    if (error instanceof ReauthRequiredError) return enterReauth(error);
    const facts = failureFacts(error);
    if (isTerminal(facts)) {
      const reauthError = new ReauthRequiredError(
        `The login is no longer valid (${describeFailure(error)}): log in again and pass the result to setTokens()`,
        { cause: error },
      );
      emit({ type: "refresh-failed", error: reauthError, terminal: true });
      return enterReauth(reauthError);
    }
    failures += 1;
    const now = clock.now();
    retryAt = now + backoffDelay(failures, random, options.backoff);
    const expired = !usable(current, now);
    lastFailure = new TokenRefreshError(
      `Could not refresh the access token: ${describeFailure(error)}${expired ? "; the current token has expired" : ""}; next attempt in ${Math.ceil((retryAt - now) / 1000)} s`,
      { cause: error, retryAt },
    );
    emit({ type: "refresh-failed", error: lastFailure, retryAt, terminal: false });
    schedule();
    return lastFailure;
  };

  // While re-login is required, look at the store now and then: another process may have logged in.
  const recheckStore = async () => {
    const now = clock.now();
    if (now - reauthCheckedAt < REAUTH_RECHECK_MS) return;
    reauthCheckedAt = now;
    const stored = ours(await store.load());
    if (stored === undefined) return;
    // A new login: a refresh token we have not seen, or a valid access token we do not hold.
    const fresh =
      (stored.refreshToken !== undefined && stored.refreshToken !== current?.refreshToken) ||
      (stored.accessToken !== current?.accessToken && usable(stored, now));
    if (!fresh) return;
    current = stored;
    reauth = undefined;
    failures = 0;
    retryAt = undefined;
    emit({ type: "adopted", expiresAt: stored.expiresAt ?? now });
    schedule();
  };

  const locked = <T>(fn: () => Promise<T>): Promise<T> => (store.lock ? store.lock(fn) : fn());

  /** A new login (or none) replaces everything known of the old one, including its failures. */
  const replaceLogin = (tokens: StoredTokens | undefined) => {
    generation += 1;
    current = tokens;
    loaded = true;
    startup = false;
    reauth = undefined;
    failures = 0;
    retryAt = undefined;
    lastFailure = undefined;
    refused = undefined;
    forced = undefined;
    schedule();
  };

  const manager: TokenManager = {
    async getAccessToken(request = {}) {
      const { signal, rejected } = request;
      signal?.throwIfAborted();
      if (closed) throw new ConnectOidcError("The token manager was closed");
      await abortable(ensureLoaded(), signal);
      if (reauth !== undefined) await abortable(recheckStore(), signal);
      if (reauth !== undefined) throw reauth;
      const now = clock.now();
      const token = current?.accessToken;
      if (rejected !== undefined && rejected === forced?.token && now - forced.at < FORCED_REFRESH_COOLDOWN_MS && usable(current, now)) {
        return rejected;
      }
      const mustRefresh = rejected !== undefined && rejected === token;
      if (mustRefresh) refused = rejected;
      if (!mustRefresh && token !== refused && usable(current, now)) {
        if (flight.pending === undefined && now >= refreshTime(current) && (retryAt === undefined || now >= retryAt)) {
          refresh("proactive").catch(() => {});
        }
        return current.accessToken;
      }
      if (grant === "refresh_token" && current?.refreshToken === undefined && flight.pending === undefined) {
        throw enterReauth(noLogin());
      }
      // No valid token: wait for the shared refresh, unless we are backing off after a failure.
      if (flight.pending === undefined && retryAt !== undefined && now < retryAt && lastFailure !== undefined) {
        throw lastFailure;
      }
      const reason: RefreshReason =
        mustRefresh || (token !== undefined && token === refused) ? "rejected" : startup || token === undefined ? "startup" : "expired";
      const tokens = await abortable(refresh(reason, reason === "rejected" ? token : undefined), signal);
      return tokens.accessToken!;
    },

    async setTokens(response) {
      if (typeof response?.access_token !== "string" || response.access_token === "") {
        throw new ConfigurationError("setTokens: the token response has no access_token");
      }
      const tokens = fromResponse(response, clock.now());
      replaceLogin(tokens);
      // In memory first: if the store fails, this process still works (and the error says why others cannot).
      await locked(() => store.save(tokens));
    },

    async signOut() {
      replaceLogin(undefined);
      await locked(() => store.clear());
    },

    close() {
      closed = true;
      if (timer !== undefined) clock.clearTimeout(timer);
      timer = undefined;
    },

    [Symbol.dispose]() {
      manager.close();
    },
  };
  return manager;
}
