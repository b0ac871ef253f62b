/**
 * What each method asks of a token — scopes, an authentication context (`acr`, RFC 9470),
 * its age — or that it needs none, keyed by `package.Service/Method` or `package.Service`;
 * and the check of a verified token against it. Pure: no Connect, no I/O.
 */
import type { VerifiedToken } from "./types.js";

/**
 * What a method requires. A list of strings is short for `{ scopes: [...] }`.
 *
 * @example
 * ```ts
 * import type { MethodRequirement } from "connect-oidc/server";
 *
 * const endSession: MethodRequirement = { scopes: ["sessions:write"], acr: ["urn:example:mfa"], maxAgeSeconds: 900 };
 * ```
 */
export interface MethodRequirement {
  /** Every one of these scopes must be granted. */
  readonly scopes?: readonly string[];
  /** The token's `acr` must be one of these (RFC 9470 step-up). */
  readonly acr?: readonly string[];
  /** The user must have authenticated at most this long ago (`auth_time`, RFC 9470). */
  readonly maxAgeSeconds?: number;
  /** No token needed (e.g. a health check); a token sent anyway is not checked. */
  readonly public?: boolean;
}

/**
 * Requirements by procedure: `"agent.v1.AgentSessionService/IngestEvent"` for one method,
 * `"agent.v1.AgentSessionService"` for every method of a service (the method's entry wins).
 * A method with no entry needs a valid token and nothing more.
 *
 * @example
 * ```ts
 * import type { MethodRequirements } from "connect-oidc/server";
 *
 * const methods: MethodRequirements = {
 *   "agent.v1.AgentSessionService": ["sessions:write"],
 *   "agent.v1.AgentSessionService/IngestEvent": ["events:write"],
 *   "grpc.health.v1.Health": { public: true },
 * };
 * ```
 */
export type MethodRequirements = Readonly<Record<string, MethodRequirement | readonly string[]>>;

/** What a token lacks for a method. */
export type PolicyShortfall =
  | { readonly kind: "scope"; readonly scopes: readonly string[] }
  | { readonly kind: "acr"; readonly acr: readonly string[] | undefined; readonly maxAgeSeconds: number | undefined };

const NONE: MethodRequirement = {};

export interface Policy {
  /** The requirement of `package.Service/Method`. */
  requirementOf(service: string, method: string): MethodRequirement;
  /** Whether a request path (`/package.Service/Method`, after any prefix) is of a public method. */
  isPublicPath(path: string): boolean;
}

function normalize(requirement: MethodRequirement | readonly string[]): MethodRequirement {
  return Array.isArray(requirement) ? { scopes: requirement as readonly string[] } : (requirement as MethodRequirement);
}

export function createPolicy(requirements: MethodRequirements = {}): Policy {
  const table = new Map<string, MethodRequirement>();
  for (const [key, requirement] of Object.entries(requirements)) table.set(key.replace(/^\//, ""), normalize(requirement));
  const requirementOf = (service: string, method: string) => table.get(`${service}/${method}`) ?? table.get(service) ?? NONE;
  return {
    requirementOf,
    isPublicPath(path) {
      // The last two segments: a Connect route is /package.Service/Method, after an optional prefix.
      const segments = path.split("?", 1)[0]!.split("/");
      const method = segments.at(-1) ?? "";
      const service = segments.at(-2) ?? "";
      return requirementOf(service, method).public === true;
    },
  };
}

/** What `token` lacks for `requirement`; undefined when it has everything. */
export function shortfallOf(token: VerifiedToken, requirement: MethodRequirement, nowSeconds: number): PolicyShortfall | undefined {
  const { acr, maxAgeSeconds } = requirement;
  if (acr !== undefined && (typeof token.claims.acr !== "string" || !acr.includes(token.claims.acr))) {
    return { kind: "acr", acr, maxAgeSeconds };
  }
  if (maxAgeSeconds !== undefined) {
    const authTime = token.claims.auth_time;
    if (typeof authTime !== "number" || nowSeconds - authTime > maxAgeSeconds) return { kind: "acr", acr, maxAgeSeconds };
  }
  const missing = (requirement.scopes ?? []).filter((scope) => !token.scopes.has(scope));
  if (missing.length > 0) return { kind: "scope", scopes: requirement.scopes ?? [] };
  return undefined;
}
