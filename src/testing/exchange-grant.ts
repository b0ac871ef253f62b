/**
 * RFC 8693 token exchange in the test identity provider, registered with oidc-provider's own
 * `registerGrantType`: a confidential client trades an access token this provider issued
 * (the subject, and optionally an actor) for a JWT access token for one of the configured
 * targets. Refusals as a real provider answers them: `invalid_grant` for a subject (or actor)
 * token that is not valid or whose login has ended, `invalid_target` for an unknown target,
 * `invalid_scope` for a scope the target does not grant.
 */
import { randomUUID } from "node:crypto";
import type Provider from "oidc-provider";
import { loadJose } from "../server/jose.js";
import type { ProviderModule } from "./provider-module.js";

export const TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token";
const PARAMETERS = [
  "audience",
  "resource",
  "scope",
  "requested_token_type",
  "subject_token",
  "subject_token_type",
  "actor_token",
  "actor_token_type",
];

export interface ExchangeGrantSettings {
  readonly errors: ProviderModule["errors"];
  /** The provider's public signing key (what its access tokens are verified with). */
  readonly publicJwk: JsonWebKey;
  /** The audiences (or resource indicators) an exchanged token may be for. */
  readonly targets: readonly string[];
  readonly scopes: readonly string[];
  readonly accessTokenTtl: number;
}

type KoaContext = Parameters<Parameters<Provider["use"]>[0]>[0];

export function registerExchangeGrant(provider: Provider, settings: ExchangeGrantSettings): void {
  const { errors } = settings;
  // A JWT access token names no login: remember which login each one was issued for.
  const loginOfToken = new Map<string, string>();
  provider.on("access_token.issued", (token: { jti?: string; grantId?: string }) => {
    if (token.jti !== undefined && token.grantId !== undefined) loginOfToken.set(token.jti, token.grantId);
  });
  const verify = async (token: unknown, type: unknown, name: string) => {
    if (type !== ACCESS_TOKEN_TYPE) throw new errors.InvalidRequest(`${name}_token_type must be ${ACCESS_TOKEN_TYPE}`);
    const jose = await loadJose();
    const key = await jose.importJWK({ ...settings.publicJwk, alg: "RS256" } as import("jose").JWK, "RS256");
    const verified = await jose
      .jwtVerify(String(token), key, { issuer: provider.issuer, typ: "at+jwt", algorithms: ["RS256"] })
      .catch(() => undefined);
    if (verified === undefined) throw new errors.InvalidGrant(`${name}_token is not valid`);
    const { sub, client_id: clientId, jti } = verified.payload as { sub?: string; client_id?: string; jti?: string };
    // A user's token: its login must still be there (a sign-out ends what may be exchanged).
    const login = jti === undefined ? undefined : loginOfToken.get(jti);
    if (sub !== clientId && login !== undefined && (await provider.Grant.find(login)) === undefined) {
      throw new errors.InvalidGrant(`the login of the ${name}_token has ended`);
    }
    return verified.payload;
  };

  const handler = async (ctx: KoaContext) => {
    const params = ctx.oidc.params as Record<string, unknown>;
    const client = ctx.oidc.client!;
    const subject = await verify(params.subject_token, params.subject_token_type, "subject");
    const actor = params.actor_token === undefined ? undefined : await verify(params.actor_token, params.actor_token_type, "actor");
    const targets = [params.audience, params.resource].flat().filter((t): t is string => typeof t === "string");
    if (targets.length !== 1 || !settings.targets.includes(targets[0]!)) {
      throw new errors.InvalidTarget("the requested audience or resource is not known");
    }
    const target = targets[0]!;
    const requested = typeof params.scope === "string" ? params.scope.split(" ").filter(Boolean) : [...settings.scopes];
    if (requested.some((s) => !settings.scopes.includes(s)))
      throw new errors.InvalidScope("requested scope is not granted", String(params.scope));
    const scope = requested.join(" ");
    const token = new provider.AccessToken({
      accountId: String(subject.sub),
      client,
      scope,
      gty: "token_exchange",
      // Not a stored login: the exchanged token is a JWT nothing looks up again.
      grantId: `exchange-${randomUUID()}`,
    });
    // The `act` claim (delegation), added by the configuration's extraTokenClaims.
    if (actor !== undefined) Object.assign(token, { exchangeActor: actor.sub });
    token.resourceServer = new provider.ResourceServer(target, {
      audience: target,
      scope,
      accessTokenTTL: settings.accessTokenTtl,
      accessTokenFormat: "jwt",
      jwt: { sign: { alg: "RS256" } },
    });
    const value = await token.save();
    ctx.body = {
      access_token: value,
      issued_token_type: ACCESS_TOKEN_TYPE,
      token_type: "Bearer",
      expires_in: token.expiration,
      scope,
    };
  };
  provider.registerGrantType(TOKEN_EXCHANGE_GRANT, handler as never, PARAMETERS, ["audience", "resource"]);
}
