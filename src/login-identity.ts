/**
 * Who a login is (`LoginIdentity`, with the `acr`/`auth_time` a step-up login got): taken
 * from the ID token's claims the login validated, kept with the login in the store, shown
 * by `tokens.status()`. Every string goes through one bounded check — at most 256
 * characters, no control characters (a name is printed to terminals) — and `auth_time`
 * must be whole epoch seconds, both on the way in and when read back from a store;
 * anything else is left out, never an error: it is for display only.
 */
import type { LoginIdentity, TokenEndpointResponse } from "./types.js";

/** The longest claim kept (characters): a keyring may cap the whole login at 2,560 bytes. */
export const MAX_CLAIM_LENGTH = 256;

/** C0 and C1 controls and DEL: a terminal would act on them. */
function hasControl(value: string): boolean {
  for (let i = 0; i < value.length; i += 1) {
    const c = value.charCodeAt(i);
    if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) return true;
  }
  return false;
}

/** The value as a claim worth keeping, or undefined. */
export function identityClaim(value: unknown): string | undefined {
  return typeof value === "string" && value.length > 0 && value.length <= MAX_CLAIM_LENGTH && !hasControl(value) ? value : undefined;
}

/** A `LoginIdentity`-shaped value, checked field by field; undefined without a usable `subject`. */
export function checkedIdentity(value: unknown): LoginIdentity | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const record = value as Record<string, unknown>;
  return identityOf(record.subject, record.name, record.email, record.preferredUsername, record.acr, record.authTime);
}

/** From an ID token's claims (`sub`, `name`, `email`, `preferred_username`, `acr`, `auth_time`). */
export function identityFromClaims(claims: unknown): LoginIdentity | undefined {
  if (typeof claims !== "object" || claims === null) return undefined;
  const record = claims as Record<string, unknown>;
  return identityOf(record.sub, record.name, record.email, record.preferred_username, record.acr, record.auth_time);
}

/**
 * The identity a token response brings: the logins' `identity`, else the validated claims
 * of an openid-client response (its `claims()` helper). A helper that throws gives none.
 */
export function identityOfResponse(response: TokenEndpointResponse): LoginIdentity | undefined {
  if (response.identity !== undefined) return checkedIdentity(response.identity);
  const claims = (response as { claims?: unknown }).claims;
  if (typeof claims !== "function") return undefined;
  try {
    return identityFromClaims(claims.call(response));
  } catch {
    return undefined;
  }
}

function identityOf(
  sub: unknown,
  name: unknown,
  email: unknown,
  preferredUsername: unknown,
  acr: unknown,
  authTime: unknown,
): LoginIdentity | undefined {
  const subject = identityClaim(sub);
  if (subject === undefined) return undefined;
  const fields = {
    name: identityClaim(name),
    email: identityClaim(email),
    preferredUsername: identityClaim(preferredUsername),
    acr: identityClaim(acr),
    authTime: epochSeconds(authTime),
  };
  return {
    subject,
    ...(fields.name !== undefined ? { name: fields.name } : {}),
    ...(fields.email !== undefined ? { email: fields.email } : {}),
    ...(fields.preferredUsername !== undefined ? { preferredUsername: fields.preferredUsername } : {}),
    ...(fields.acr !== undefined ? { acr: fields.acr } : {}),
    ...(fields.authTime !== undefined ? { authTime: fields.authTime } : {}),
  };
}

/** A time in whole epoch seconds (`auth_time`), or undefined. */
function epochSeconds(value: unknown): number | undefined {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0 ? value : undefined;
}
