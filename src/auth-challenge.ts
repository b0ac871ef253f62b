/**
 * The challenges a fresh token cannot answer: RFC 9470 step-up
 * (`error="insufficient_user_authentication"`, with `acr_values` / `max_age`) and RFC 6750
 * §3.1 `error="insufficient_scope"` (with `scope`), in the `WWW-Authenticate` of a refusal
 * under the scheme the call used. Each becomes the call's failure at once, with a typed
 * `cause` (StepUpRequiredError, InsufficientScopeError): the login stands, only a new login
 * (stronger, or with more scope) would help, so nothing is refreshed, re-sent or reported.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { InsufficientScopeError, StepUpRequiredError } from "./errors.js";
import { type Challenge, parseChallenges } from "./www-authenticate.js";

/** The longest server value quoted in a message (a server's answer, not ours to print whole). */
const MAX_QUOTED = 200;

/**
 * The call's failure when `refusal` carries a step-up or insufficient-scope challenge of
 * `scheme` ("Bearer" or "DPoP"), else undefined. A step-up fails with `Code.Unauthenticated`;
 * an insufficient scope keeps the server's code (usually PermissionDenied).
 */
export function challengeFailure(scheme: string, url: string, refusal: unknown): ConnectError | undefined {
  if (!(refusal instanceof ConnectError)) return undefined;
  const header = refusal.metadata.get("www-authenticate");
  if (header === null) return undefined;
  const wanted = scheme.toLowerCase();
  const challenge = parseChallenges(header)?.find((c) => c.scheme === wanted && isUnanswerable(c));
  if (challenge === undefined) return undefined;
  const origin = new URL(url).origin;
  if (challenge.params.get("error") === "insufficient_scope") return insufficientScope(origin, challenge, refusal);
  return stepUp(origin, challenge, refusal);
}

function isUnanswerable(challenge: Challenge): boolean {
  const error = challenge.params.get("error");
  return error === "insufficient_user_authentication" || error === "insufficient_scope";
}

function stepUp(origin: string, challenge: Challenge, refusal: ConnectError): ConnectError {
  const acrValues = challenge.params.get("acr_values");
  const maxAge = seconds(challenge.params.get("max_age"));
  const wants = [
    acrValues === undefined ? undefined : `acr_values "${clip(acrValues)}"`,
    maxAge === undefined ? undefined : `an authentication at most ${maxAge} s old`,
  ].filter((w) => w !== undefined);
  const cause = new StepUpRequiredError(
    `The server at ${origin} asks for a stronger login (${wants.length > 0 ? wants.join(", ") : "insufficient_user_authentication"}): log in again with loginWithBrowser({ acrValues, maxAge }) from this error and pass the result to setTokens()`,
    { cause: refusal, acrValues, maxAge },
  );
  return new ConnectError(`Not authenticated: ${cause.message}`, Code.Unauthenticated, refusal.metadata, undefined, cause);
}

function insufficientScope(origin: string, challenge: Challenge, refusal: ConnectError): ConnectError {
  const scope = challenge.params.get("scope");
  const cause = new InsufficientScopeError(
    `The server at ${origin} refused the call for lack of scope${scope === undefined ? "" : ` (it needs "${clip(scope)}")`}: log in with that scope (the \`scope\` option), or ask for access to it`,
    { cause: refusal, scope },
  );
  return new ConnectError(`Insufficient scope: ${cause.message}`, refusal.code, refusal.metadata, undefined, cause);
}

/** `max_age` as whole seconds (RFC 9470: a non-negative integer, sent quoted or not). */
function seconds(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d{1,10}$/.test(value)) return undefined;
  return Number(value);
}

function clip(value: string): string {
  return value.length > MAX_QUOTED ? `${value.slice(0, MAX_QUOTED)}…` : value;
}
