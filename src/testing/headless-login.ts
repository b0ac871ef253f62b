/**
 * The user's side of a login, without a user: an authorization code + PKCE login of the
 * public client through openid-client, walking the provider's redirects (interactions.ts
 * approves), optionally bound to a DPoP key; and the device flow's approval pages.
 */
import * as oidc from "openid-client";
import { type DPoPKey, generateDPoPKey, isDPoPKey } from "../dpop-key.js";
import { ConfigurationError } from "../errors.js";
import type { TestLoginOptions, TestLoginResponse } from "./identity-provider-types.js";
import { createPageWalker, parseForm } from "./page-walker.js";

const DEFAULT_REDIRECT_URI = "http://127.0.0.1/callback";

/** The DPoP key of a login (returned as `dpopKey`) and openid-client's handle for it. */
async function dpopBinding(config: oidc.Configuration, dpop: TestLoginOptions["dpop"]) {
  if (dpop === undefined) return undefined;
  if (dpop !== true && !isDPoPKey(dpop)) return { handle: dpop, key: undefined };
  // Extractable: setTokens keeps the key with the login in any store.
  const key: DPoPKey = dpop === true ? await generateDPoPKey("ES256", true) : dpop;
  return { handle: oidc.getDPoPHandle(config, key.keyPair), key };
}

/** Logs in as the test account; `defaultScope` when the options name none. */
export async function headlessLogin(
  config: oidc.Configuration,
  defaultScope: string,
  options: TestLoginOptions = {},
): Promise<TestLoginResponse> {
  const redirectUri = options.redirectUri ?? DEFAULT_REDIRECT_URI;
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const scope = options.scope ?? defaultScope;
  const nonce = scope.split(" ").includes("openid") ? oidc.randomNonce() : undefined;
  const dpop = await dpopBinding(config, options.dpop);
  const parameters: Record<string, string> = {
    redirect_uri: redirectUri,
    scope,
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: "S256",
    state,
    // oidc-provider drops offline_access from an authorization request without prompt=consent.
    prompt: "consent",
  };
  if (nonce !== undefined) parameters.nonce = nonce;
  if (dpop) parameters.dpop_jkt = await dpop.handle.calculateThumbprint();
  const query = new URLSearchParams(parameters);
  // Several resource indicators (RFC 8707): one `resource` parameter each.
  for (const resource of [options.resource ?? []].flat()) query.append("resource", resource);

  const walk = await createPageWalker().navigate(oidc.buildAuthorizationUrl(config, query).href, {}, redirectUri);
  if ("page" in walk) throw new Error(`login ended on a page instead of the redirect: ${(await walk.page.text()).slice(0, 300)}`);
  const checks = { pkceCodeVerifier: verifier, expectedState: state, ...(nonce !== undefined ? { expectedNonce: nonce } : {}) };
  const response = await oidc.authorizationCodeGrant(config, walk.url, checks, undefined, dpop ? { DPoP: dpop.handle } : undefined);
  if (dpop && response.token_type.toLowerCase() !== "dpop") {
    throw new ConfigurationError("login({ dpop }): the provider answered a bearer token: start it without `dpop: false`");
  }
  if (dpop?.key === undefined) return response;
  // The helpers (expiresIn(), claims()) live on the response object: keep it, add the key.
  return Object.assign(response, { dpopKey: dpop.key });
}

/** Approves (or denies) a pending device authorization through the provider's /device pages. */
export async function decideDeviceCode(verificationUri: string, userCode: string, decision: "confirm" | "abort"): Promise<void> {
  const walker = createPageWalker();
  // GET /device?user_code=… answers an auto-submitting form carrying the xsrf token.
  const first = await walker.navigate(`${verificationUri}?user_code=${encodeURIComponent(userCode)}`);
  if (!("page" in first)) throw new Error("device flow: unexpected redirect");
  const entry = parseForm(await first.page.text(), first.url);
  const confirmPage = await walker.navigate(entry.action.href, { method: "POST", body: entry.fields });
  if (!("page" in confirmPage)) throw new Error("device flow: unexpected redirect");
  const html = await confirmPage.page.text();
  if (!html.includes('name="confirm"')) throw new Error(`device flow: no confirmation form: ${html.slice(0, 300)}`);
  const confirm = parseForm(html, confirmPage.url);
  if (decision === "abort") {
    confirm.fields.delete("confirm");
    confirm.fields.set("abort", "yes");
  }
  // confirm → authorization → /interaction/:uid (approved) → resume → success page.
  const done = await walker.navigate(confirm.action.href, { method: "POST", body: confirm.fields }).catch((err: unknown) => {
    // A denied device flow ends on an error page (400): the expected end.
    if (decision === "abort") return undefined;
    throw err;
  });
  if (decision === "abort") {
    if (done && "page" in done) await done.page.body?.cancel();
    return;
  }
  if (!done || !("page" in done)) throw new Error("device flow: did not reach the success page");
  const text = await done.page.text();
  if (!text.includes("device approved")) throw new Error(`device flow: unexpected page: ${text.slice(0, 300)}`);
}
