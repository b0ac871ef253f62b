/**
 * The rule for an identity provider that answers a DPoP token request with bearer tokens.
 * Such tokens are never used (no silent downgrade); what the refusal means depends on the
 * grant and on what came before:
 * - a login (refresh): the first bearer answer in a row is a failed refresh whose rotated
 *   refresh token is kept (`keepRotated`: the old one is consumed) — a provider's passing
 *   fault; the second in a row ends the login with `DPoPKeyError` "bearer-refresh", keeping
 *   nothing (refreshing on would rotate the refresh token at every backoff for ever);
 * - client credentials: a provider that has not bound one token for this manager yet does not
 *   do DPoP for the client — a `ProviderConfigurationError` ("dpop"), final; one that has (and then answers
 *   bearer) gives a failed grant, retried with backoff.
 * A DPoP-bound answer or a new login starts the count again. Per manager, in memory.
 */
import { isDPoPTokenType } from "./dpop-key.js";
import { DPoPKeyError, ProviderConfigurationError } from "./errors.js";
import { ExchangeFailure } from "./failure.js";

/** Why an answer cannot be used, and whether a refresh token in it is kept. */
export interface BearerAnswer {
  readonly error: Error;
  readonly keepRotated: boolean;
}

export interface BearerAnswers {
  /** The answer's `token_type` seen: undefined for DPoP-bound tokens, else the refusal. */
  check(tokenType: unknown, grant: "refresh_token" | "client_credentials"): BearerAnswer | undefined;
  /** A new login was set: the count starts again. */
  newLogin(): void;
}

/** Bearer answers in a row to a login's DPoP refreshes that end the login. */
const BEARER_REFRESHES_ENDING_LOGIN = 2;

/** `where`: the client and issuer, as the manager's messages name them. */
export function createBearerAnswers(where: string): BearerAnswers {
  let inARow = 0;
  let boundSeen = false;
  return {
    check(tokenType, grant) {
      if (isDPoPTokenType(tokenType)) {
        inARow = 0;
        boundSeen = true;
        return undefined;
      }
      inARow += 1;
      const what = `the identity provider answered a DPoP token request of ${where} with bearer tokens (token_type is not DPoP)`;
      if (grant === "client_credentials" && !boundSeen) {
        const fix = "enable DPoP (RFC 9449) for this client at the provider, or create the token manager without `dpop`";
        return {
          error: new ProviderConfigurationError("dpop", `${upperFirst(what)}: it does not bind this client's tokens: ${fix}`),
          keepRotated: false,
        };
      }
      if (grant === "refresh_token" && inARow >= BEARER_REFRESHES_ENDING_LOGIN) {
        const message = `${upperFirst(what)}, ${inARow} times in a row: it no longer binds this login's tokens to its key, and bearer tokens are never used in their place. Check that DPoP is enabled for this client at the provider, then log in again`;
        return { error: new DPoPKeyError("bearer-refresh", message), keepRotated: false };
      }
      const next = grant === "refresh_token" ? "; the login ends if the next refresh is answered so too" : "";
      return { error: new ExchangeFailure(`${what}${next}`, {}), keepRotated: true };
    },
    newLogin() {
      inARow = 0;
    },
  };
}

const upperFirst = (text: string) => text.charAt(0).toUpperCase() + text.slice(1);
