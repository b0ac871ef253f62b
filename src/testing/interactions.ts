/**
 * The provider's interaction step, without a page: every `/interaction/:uid` signs in as the
 * test account and consents to everything asked (OIDC scopes and claims, the API scopes),
 * then hands back to the authorization endpoint. Other requests go to oidc-provider.
 */
import type http from "node:http";
import type Provider from "oidc-provider";

export interface InteractionSettings {
  readonly accountId: string;
  readonly audience: string;
  readonly apiScopes: readonly string[];
}

interface PromptDetails {
  readonly missingOIDCScope?: string[];
  readonly missingOIDCClaims?: string[];
  readonly missingResourceScopes?: Record<string, string[]>;
}

async function approve(provider: Provider, settings: InteractionSettings, req: http.IncomingMessage, res: http.ServerResponse) {
  const { accountId } = settings;
  const details = await provider.interactionDetails(req, res);
  const clientId = String(details.params.client_id);
  const existing = details.grantId ? await provider.Grant.find(details.grantId) : undefined;
  const grant = existing ?? new provider.Grant({ accountId, clientId });

  const prompt = details.prompt.details as PromptDetails;
  grant.addOIDCScope(["openid", "offline_access", ...(prompt.missingOIDCScope ?? [])]);
  if (prompt.missingOIDCClaims?.length) grant.addOIDCClaims(prompt.missingOIDCClaims);
  grant.addResourceScope(settings.audience, settings.apiScopes.join(" "));
  for (const [indicator, scopes] of Object.entries(prompt.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(" "));
  }
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { login: { accountId }, consent: { grantId } }, { mergeWithLastSubmission: false });
}

/** The HTTP handler of the identity provider: headless interactions, then oidc-provider. */
export function providerHandler(provider: Provider, settings: InteractionSettings): http.RequestListener {
  const prefix = "/interaction/";
  const koaCallback = provider.callback();
  return (req, res) => {
    if (!req.url?.startsWith(prefix)) {
      koaCallback(req, res);
      return;
    }
    approve(provider, settings, req, res).catch((err: unknown) => {
      if (!res.headersSent) {
        res.statusCode = 500;
        res.setHeader("content-type", "text/plain");
      }
      res.end(`interaction failed: ${err instanceof Error ? err.message : String(err)}`);
    });
  };
}
