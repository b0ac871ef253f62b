/**
 * The project's tests' identity provider: `connect-oidc/testing`'s
 * `startTestIdentityProvider` (src/testing/), with the names the tests were written with
 * (`startIdp`, `revokeGrant`) and 5-second access tokens.
 *
 * - `test-cli`: public native client (no secret, PKCE), authorization code, refresh token and
 *   device code grants. Refresh tokens rotate; re-using an old one answers `invalid_grant`
 *   and revokes the whole grant.
 * - `test-service` / `test-service-post` / `test-service-jwt`: confidential clients on
 *   client_secret_basic / _post / private_key_jwt, client_credentials grant.
 * - `test-cli-exact` (only with `exactRedirectUris`): public web client whose redirect URIs
 *   match exactly, port included.
 * - Access tokens are RS256 JWTs (`typ: at+jwt`) for the audience `urn:connect-oidc:test`.
 *
 * Loopback redirects: a native client that registered `http://127.0.0.1/callback` may use
 * `http://127.0.0.1:<any port>/callback` (RFC 8252 §7.3); host and path must still match.
 */
import { startTestIdentityProvider } from "../../src/testing.js";
import type {
  TestIdentityProvider,
  TestIdentityProviderOptions,
  TestIdentityProviderStats,
  TestLatencyOptions,
  TestLoginOptions,
  TestLoginResponse,
} from "../../src/testing.js";

export const TEST_AUDIENCE = "urn:connect-oidc:test";
/** The scope the resource server grants; requested by default. */
export const TEST_API_SCOPE = "api";
export const TEST_ACCOUNT = "test-user";

export type IdpOptions = TestIdentityProviderOptions;
export type LoginOptions = TestLoginOptions;
export type TokenResponse = TestLoginResponse;
export type IdpStats = TestIdentityProviderStats;
export type TokenLatencyOptions = TestLatencyOptions;

export interface Idp extends TestIdentityProvider {
  /** `revokeLogin`: with a refresh token, the grant it belongs to; without, every grant so far. */
  revokeGrant(refreshToken?: string): Promise<void>;
}

export async function startIdp(options: IdpOptions = {}): Promise<Idp> {
  const idp = await startTestIdentityProvider({ accessTokenTtl: 5, ...options });
  return Object.assign(idp, { revokeGrant: idp.revokeLogin });
}
