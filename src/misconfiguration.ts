/**
 * What the identity provider's refusal says about the configuration, in words a user can act
 * on: which URL or request was tried, and which option to change. Reads token-free facts
 * only (status, OAuth error code, library code, the issuer the provider names); no I/O.
 */
import type { ClientCredentialsKind } from "./client-auth.js";
import { ProviderConfigurationError } from "./errors.js";
import { describeFailure, ExchangeFailure, failureFacts, libraryCode, untrustedCertificate } from "./failure.js";
import { type FailureFacts, failureKind, type GrantType } from "./policy.js";

/** The settings a token-endpoint refusal is explained with. */
export interface RequestSettings {
  readonly issuer: string;
  readonly clientId: string;
  readonly grant: GrantType;
  /** How the client proves itself: a secret, a private key, a client assertion, or nothing (a public client). */
  readonly credentials: ClientCredentialsKind;
  readonly scope?: string;
  readonly resource?: string;
  /** A token exchange's `audience`. */
  readonly audience?: string;
}

const withoutSlash = (url: string) => url.replace(/\/$/, "");

/** Where openid-client looks for an issuer's metadata (OpenID Connect Discovery 1.0 §4). */
export function discoveryUrl(issuer: string | URL): string {
  const url = new URL(issuer);
  if (url.pathname.includes("/.well-known/")) return url.href;
  return `${withoutSlash(url.href)}/.well-known/openid-configuration`;
}

// A provider's own issuer: printed only when it reads as a plain http(s) URL of sane length.
function issuerNamed(value: unknown): string | undefined {
  if (typeof value !== "string" || value.length > 300 || !/^https?:\/\/[\x21-\x7E]+$/.test(value)) return undefined;
  return value;
}

/**
 * A failed discovery: a `ProviderConfigurationError` when the answer shows the issuer is
 * wrong (a 4xx but 408/429, not a discovery document, another issuer named, an http
 * endpoint refused), else a token-free `ExchangeFailure` that names the URL tried (an
 * outage, a timeout, a closed port: they may pass).
 */
export function discoveryFailure(error: unknown, issuer: string | URL): Error {
  const url = discoveryUrl(issuer);
  const code = libraryCode(error);
  const facts = failureFacts(error);
  if (code === "OAUTH_JSON_ATTRIBUTE_COMPARISON_FAILED") {
    const detail = (error as { cause?: { attribute?: unknown; body?: { issuer?: unknown } } }).cause;
    const named = detail?.attribute === "issuer" ? issuerNamed(detail.body?.issuer) : undefined;
    const configured = withoutSlash(new URL(issuer).href);
    return new ProviderConfigurationError(
      "issuer-mismatch",
      named === undefined
        ? `the discovery document at ${url} names another issuer than ${configured}: set \`issuer\` to the one the provider names`
        : `the provider calls itself ${withoutSlash(named)}, not ${configured} (discovery at ${url}): use that as \`issuer\``,
      { cause: summary(error) },
    );
  }
  if (code === "OAUTH_HTTP_REQUEST_FORBIDDEN") {
    return new ProviderConfigurationError(
      "insecure",
      `the identity provider at ${withoutSlash(new URL(issuer).href)} names an http:// endpoint: use https, or set \`allowInsecureRequests: true\` (loopback development and tests only)`,
      { cause: summary(error) },
    );
  }
  const status = facts.status;
  if (status !== undefined && status >= 400 && status < 500 && status !== 408 && status !== 429) {
    return new ProviderConfigurationError("issuer", `the discovery document at ${url} answered ${status}: check \`issuer\``, {
      cause: summary(error),
    });
  }
  if (code === "OAUTH_RESPONSE_IS_NOT_JSON" || code === "OAUTH_PARSE_ERROR" || code === "OAUTH_INVALID_RESPONSE") {
    return new ProviderConfigurationError(
      "issuer",
      `the answer at ${url} is not a discovery document (${code}): check \`issuer\` (the URL the provider names as its issuer)`,
      { cause: summary(error) },
    );
  }
  if (untrustedCertificate(error) !== undefined) {
    // The message names the fix already; no "check `issuer`" here.
    return new ExchangeFailure(`${describeFailure(error)} (discovery at ${url})`, { ...facts, ...(code !== undefined ? { code } : {}) });
  }
  const network = networkCode(error);
  const tls = network !== undefined && /CERT|TLS|SELF_SIGNED|UNABLE_TO_VERIFY/.test(network);
  const reached =
    status !== undefined
      ? ""
      : `${network !== undefined ? ` (${network})` : ""}; if this persists, check \`issuer\`${tls ? " (a private CA: a `fetch` of your own that trusts it, or NODE_EXTRA_CA_CERTS)" : ""}`;
  return new ExchangeFailure(`${describeFailure(error)} at ${url}${reached}`, {
    ...facts,
    ...(code !== undefined ? { code } : {}),
  });
}

/**
 * A failed token request that the provider's answer shows to be a configuration problem
 * (see `failureKind`), as a `ProviderConfigurationError` naming the option; else undefined.
 */
export function tokenRequestMisconfiguration(error: Error, settings: RequestSettings): ProviderConfigurationError | undefined {
  if (error instanceof ProviderConfigurationError) return error;
  if (libraryCode(error) === "OAUTH_HTTP_REQUEST_FORBIDDEN") return discoveryFailure(error, settings.issuer) as ProviderConfigurationError;
  const facts = failureFacts(error);
  if (failureKind(facts, settings.grant) !== "configuration") return undefined;
  const [reason, message] = explain(facts, settings);
  return new ProviderConfigurationError(reason, message, { cause: error });
}

function explain(facts: FailureFacts, settings: RequestSettings): [ProviderConfigurationError["reason"], string] {
  // The OAuth code alone where it says it all; with the status where it does not (a 401 challenge's `invalid_token`).
  const status = `HTTP ${facts.status ?? "error"}`;
  const answered =
    facts.error === undefined
      ? status
      : facts.status === 401 && facts.error !== "invalid_client"
        ? `${status} ${facts.error}`
        : facts.error;
  const grant = settings.grant.replace("_", " ");
  // The logins have no `grant` option: their client must be registered for the grant they use.
  const options = settings.grant === "refresh_token" || settings.grant === "client_credentials" ? "`grant` and `clientId`" : "`clientId`";
  switch (facts.error) {
    case "invalid_scope":
      return ["scope", `the identity provider refused the scope ${JSON.stringify(settings.scope ?? "")} (invalid_scope): check \`scope\``];
    case "invalid_target": {
      const option = settings.audience !== undefined ? "audience" : "resource";
      return [
        "resource",
        `the identity provider does not know the ${option} ${JSON.stringify(settings.audience ?? settings.resource ?? "")} (invalid_target): check \`${option}\``,
      ];
    }
    case "unauthorized_client":
    case "unsupported_grant_type":
    case "invalid_request":
    case "invalid_grant":
      return [
        "grant",
        `the identity provider refused the ${grant} grant of client "${settings.clientId}" (${answered}): check ${options}, and that the client is registered for that grant`,
      ];
  }
  if (facts.error === undefined && (facts.status === 404 || facts.status === 405)) {
    return [
      "token-endpoint",
      `the token endpoint named by the discovery document at ${discoveryUrl(settings.issuer)} answered ${facts.status}: check \`issuer\``,
    ];
  }
  if (facts.status === 401 || facts.error === "invalid_client") return ["client", clientRefused(answered, settings)];
  return ["grant", `the identity provider refused the ${grant} grant of client "${settings.clientId}" (${answered}): check ${options}`];
}

function clientRefused(answered: string, settings: RequestSettings): string {
  switch (settings.credentials) {
    case "secret":
      return `the identity provider refused this client's credentials (${answered}): check \`clientId\`, \`clientSecret\` and \`clientAuthentication\``;
    case "private-key":
      return `the identity provider refused this client's credentials (${answered}): check \`clientId\`, \`clientPrivateKey\` (and its \`kid\`) and \`clientAuthentication\``;
    case "assertion":
      return `the identity provider refused this client's assertion (${answered}): check \`clientAssertion\` — the provider must trust the key that signed it and its issuer, its \`iss\`/\`sub\` must name client "${settings.clientId}" as the provider expects, its \`aud\` the provider, and it must not have expired`;
    case "none": {
      // The token manager takes a secret; the logins are for public clients only.
      const secret = settings.grant === "refresh_token" || settings.grant === "client_credentials";
      return `the identity provider refused client "${settings.clientId}" (${answered}): check \`clientId\` (a public client registered at ${settings.issuer})${secret ? ", or give the client's `clientSecret` if it has one" : ""}`;
    }
  }
}

/** A token-free stand-in for the third-party error (its cause chain may hold response bodies). */
function summary(error: unknown): ExchangeFailure {
  const code = libraryCode(error);
  return new ExchangeFailure(describeFailure(error), { ...failureFacts(error), ...(code !== undefined ? { code } : {}) });
}

/** The first system or TLS error code in a fetch failure's cause chain (ECONNREFUSED, ENOTFOUND, CERT_HAS_EXPIRED, ...). */
function networkCode(error: unknown, depth = 0): string | undefined {
  if (typeof error !== "object" || error === null || depth > 5) return undefined;
  const { code, cause, errors } = error as { code?: unknown; cause?: unknown; errors?: unknown };
  if (typeof code === "string" && /^[A-Z][A-Z0-9_]{1,63}$/.test(code) && !code.startsWith("OAUTH_")) return code;
  if (Array.isArray(errors)) for (const e of errors) return networkCode(e, depth + 1);
  return networkCode(cause, depth + 1);
}
