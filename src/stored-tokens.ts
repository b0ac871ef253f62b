/**
 * The persisted form of a login, the one every store writes and reads: compact JSON of the
 * known fields, read back strictly. A value that is no login is `corrupt`, and never quoted:
 * it may hold tokens.
 */
import { type StoredDPoPKey, storedJwkKey } from "./dpop-key.js";
import { ConfigurationError, corruptLogin } from "./errors.js";
import { checkedIdentity } from "./login-identity.js";
import type { LoginIdentity, ResourceTokens, StoredTokens } from "./types.js";

/**
 * The persisted form of a login: compact JSON of the known fields only. Kept small
 * because some keyrings cap a secret (Windows Credential Manager: 2,560 bytes), so
 * nothing else (an ID token, say) rides along even if the object carries it; the login's
 * identity is a few bounded strings.
 */
export function serializeStoredTokens(tokens: StoredTokens): string {
  const out: Record<string, string | number | StoredDPoPKey | LoginIdentity | Record<string, ResourceTokens>> = {
    version: 1,
    issuer: tokens.issuer,
    clientId: tokens.clientId,
  };
  for (const key of optionalStrings) {
    const value = tokens[key];
    if (value !== undefined) out[key] = value;
  }
  for (const key of optionalNumbers) {
    const value = tokens[key];
    if (value !== undefined) out[key] = value;
  }
  if (tokens.tokenType === "DPoP") out.tokenType = "DPoP";
  if (tokens.dpopKey !== undefined) {
    // A key held as CryptoKeys (a store that keeps objects) has no text form: never written without it.
    const key = storedJwkKey(tokens.dpopKey);
    if (key === undefined) {
      throw new ConfigurationError(
        "This store serializes the login, but its DPoP key is held as CryptoKeys (for stores with keepsCryptoKeys): it cannot be written",
      );
    }
    out.dpopKey = key;
  }
  // Who logged in: display only, bounded (login-identity.ts); an unusable one is left out.
  const identity = checkedIdentity(tokens.identity);
  if (identity !== undefined) out.identity = identity;
  if (tokens.resources !== undefined && Object.keys(tokens.resources).length > 0) out.resources = compactResources(tokens.resources);
  return JSON.stringify(out);
}

/**
 * Reads what `serializeStoredTokens` wrote. `where` names the place for the error
 * message (e.g. `The token file /home/me/.config/app/tokens.json`).
 *
 * Errors never quote the text, not even through `cause`: it holds tokens, and
 * V8's JSON.parse messages echo the input.
 */
export function parseStoredTokens(text: string, where: string): StoredTokens {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw corruptLogin(where, "it is not JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw corruptLogin(where, "it is not a JSON object");
  }
  const record = value as Record<string, unknown>;
  if (record.version !== 1) {
    const detail =
      typeof record.version === "number" ? "its format version is not 1 (written by a newer connect-oidc?)" : "it has no format version";
    throw corruptLogin(where, detail);
  }
  for (const key of ["issuer", "clientId"] as const) {
    if (typeof record[key] !== "string" || record[key] === "") {
      throw corruptLogin(where, `field "${key}" is missing or not a string`);
    }
  }
  for (const key of optionalStrings) {
    if (record[key] !== undefined && typeof record[key] !== "string") {
      throw corruptLogin(where, `field "${key}" is not a string`);
    }
  }
  for (const key of ["accessToken", "refreshToken"] as const) {
    if (record[key] !== undefined && !isTokenString(record[key])) throw corruptLogin(where, `field "${key}" ${NOT_A_TOKEN}`);
  }
  for (const key of optionalNumbers) {
    if (record[key] !== undefined && !Number.isFinite(record[key])) {
      throw corruptLogin(where, `field "${key}" is not a number`);
    }
  }
  if (record.tokenType !== undefined && record.tokenType !== "DPoP") throw corruptLogin(where, 'field "tokenType" is not "DPoP"');
  // Never quoted: the key's private part is as secret as the tokens.
  if (record.dpopKey !== undefined && storedJwkKey(record.dpopKey) === undefined) {
    throw corruptLogin(where, 'field "dpopKey" is not a usable DPoP key (its algorithm or a JWK member is missing or malformed)');
  }
  const resourcesProblem = record.resources === undefined ? undefined : resourcesFieldProblem(record.resources);
  if (resourcesProblem !== undefined) throw corruptLogin(where, `field "resources" ${resourcesProblem}`);
  // Copy the known fields only, so unknown ones never reach the token manager: a
  // `discovery` (the provider's metadata, which earlier versions wrote) is ignored. An
  // endpoint read back from a store is never used: whoever can write the store could
  // point it at their own server.
  return JSON.parse(serializeStoredTokens(record as unknown as StoredTokens)) as StoredTokens;
}

/**
 * A token as the package takes it: visible ASCII (0x21–0x7E), at least one character — no
 * space, no control character (CR, LF, NUL), nothing beyond ASCII. So it always makes a
 * valid `authorization` header value, and the header can never be split or refused.
 * RFC 6750's b64token (and RFC 9449's) is stricter; the visible-ASCII superset is taken
 * because real providers' opaque tokens hold other visible characters (`|`, `%`, `!`).
 */
export function isTokenString(value: unknown): value is string {
  return typeof value === "string" && TOKEN_PATTERN.test(value);
}

const TOKEN_PATTERN = /^[\x21-\x7e]+$/;

/** Why a string is no token (never quoting it). */
const NOT_A_TOKEN = "holds characters no token may have (only visible ASCII, no spaces or control characters)";

const optionalStrings = ["accessToken", "refreshToken", "scope"] as const;
const optionalNumbers = ["issuedAt", "expiresAt", "refreshExpiresAt"] as const;

/** The same login as far as identity goes: same access tokens (the resources' too) and same refresh token. */
export function sameLogin(a: StoredTokens | undefined, b: StoredTokens | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  if (a.accessToken !== b.accessToken || a.refreshToken !== b.refreshToken) return false;
  const keys = new Set([...Object.keys(a.resources ?? {}), ...Object.keys(b.resources ?? {})]);
  for (const key of keys) if (a.resources?.[key]?.accessToken !== b.resources?.[key]?.accessToken) return false;
  return true;
}

/**
 * Problems with a token response that would store a login the store later reads as corrupt
 * (or one that cannot work): undefined when it is fine. Never quotes a value.
 */
export function tokenResponseProblem(response: unknown): string | undefined {
  if (typeof response !== "object" || response === null) return "it is not an object";
  const r = response as Record<string, unknown>;
  if (typeof r.access_token !== "string" || r.access_token === "") return "it has no access_token string";
  if (!isTokenString(r.access_token)) return `its access_token ${NOT_A_TOKEN}`;
  if (r.refresh_token !== undefined && (typeof r.refresh_token !== "string" || r.refresh_token === "")) {
    return "its refresh_token is not a non-empty string";
  }
  if (r.refresh_token !== undefined && !isTokenString(r.refresh_token)) return `its refresh_token ${NOT_A_TOKEN}`;
  if (r.expires_in !== undefined && expiresInSeconds(r.expires_in) === undefined) return "its expires_in is not a number of seconds";
  if (r.scope !== undefined && typeof r.scope !== "string") return "its scope is not a string";
  return undefined;
}

/** `expires_in` as a number: a number, or a numeric string (some providers send "3600"). */
export function expiresInSeconds(value: unknown): number | undefined {
  const n = typeof value === "string" && /^\s*\d+(\.\d+)?\s*$/.test(value) ? Number(value) : value;
  return typeof n === "number" && Number.isFinite(n) ? n : undefined;
}

/** How many resource servers' tokens one stored login keeps (see `withResource`). */
export const MAX_STORED_RESOURCES = 16;

/** A resource indicator as the package takes it (RFC 8707: an absolute URI, no fragment): at most this long. */
const MAX_RESOURCE_LENGTH = 2048;

/** The known fields of each resource's tokens only. */
function compactResources(resources: Readonly<Record<string, ResourceTokens>>): Record<string, ResourceTokens> {
  const out: Record<string, ResourceTokens> = {};
  for (const [resource, tokens] of Object.entries(resources)) {
    out[resource] = {
      accessToken: tokens.accessToken,
      issuedAt: tokens.issuedAt,
      expiresAt: tokens.expiresAt,
      ...(tokens.tokenType === "DPoP" ? { tokenType: "DPoP" as const } : {}),
    };
  }
  return out;
}

/** What is wrong with a stored `resources` field (never quoting a value), or undefined. */
function resourcesFieldProblem(value: unknown): string | undefined {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return "is not a JSON object";
  const entries = Object.entries(value);
  if (entries.length > MAX_STORED_RESOURCES) return `holds more than ${MAX_STORED_RESOURCES} resources`;
  for (const [resource, tokens] of entries) {
    if (resource === "" || resource.length > MAX_RESOURCE_LENGTH) return "has a resource indicator that is empty or too long";
    if (typeof tokens !== "object" || tokens === null) return "has an entry that is not an object";
    const entry = tokens as Record<string, unknown>;
    if (!isTokenString(entry.accessToken)) return `has an access token that ${NOT_A_TOKEN}`;
    if (!Number.isFinite(entry.issuedAt) || !Number.isFinite(entry.expiresAt)) return "has an entry without its times";
    if (entry.tokenType !== undefined && entry.tokenType !== "DPoP") return 'has a "tokenType" that is not "DPoP"';
  }
  return undefined;
}

/** `login` with `tokens` for `resource`; beyond MAX_STORED_RESOURCES, the other resource whose token expires first is dropped. */
export function withResource(login: StoredTokens, resource: string, tokens: ResourceTokens): StoredTokens {
  const resources: Record<string, ResourceTokens> = { ...login.resources, [resource]: tokens };
  const others = Object.keys(resources).filter((key) => key !== resource);
  others.sort((a, b) => resources[a]!.expiresAt - resources[b]!.expiresAt);
  for (const key of others.slice(0, Math.max(0, others.length + 1 - MAX_STORED_RESOURCES))) delete resources[key];
  return { ...login, resources };
}

/** The login as a resource's token sees it: that resource's access token and times, the login's refresh token and key. */
export function resourceView(login: StoredTokens, resource: string | undefined): StoredTokens {
  if (resource === undefined) return login;
  const { accessToken: _main, issuedAt: _issued, expiresAt: _expires, tokenType: _type, resources, ...rest } = login;
  const tokens = resources?.[resource];
  return tokens === undefined ? rest : { ...rest, ...tokens };
}
