/**
 * A headless walk through the identity provider's pages: a cookie jar, a redirect follower
 * that stops at the client's redirect URI, and the hidden fields of a form. Enough for the
 * authorization code and device flows of the test identity provider, whose interaction
 * step approves everything without a page.
 */

export interface PageWalker {
  /**
   * Request, then follow redirects until a 2xx page (returned) or a Location that starts
   * with `stopAt` (returned as a URL, not requested). A 4xx/5xx page rejects.
   */
  navigate(
    url: string,
    init?: RequestInit,
    stopAt?: string,
  ): Promise<{ readonly url: URL } | { readonly page: Response; readonly url: URL }>;
}

/** Internal (not exported by connect-oidc/testing); test/support/headless-browser.ts uses it too. */
export interface CookieJar {
  /** Keep the cookies a response sets (and drop the ones it expires). */
  store(res: Response): void;
  /** Send the kept cookies with a request. */
  addTo(headers: Headers): void;
}

function isExpiring(attributes: readonly string[]): boolean {
  return attributes.some((a) => {
    const [k = "", v = ""] = a.split("=");
    const attr = k.trim().toLowerCase();
    if (attr === "max-age") return Number(v) <= 0;
    if (attr === "expires") return Date.parse(v) <= Date.now();
    return false;
  });
}

/** One jar for every host: the provider and a loopback listener never share cookie names that matter. */
export function createCookieJar(): CookieJar {
  const cookies = new Map<string, string>();
  return {
    store(res) {
      for (const line of res.headers.getSetCookie()) {
        const [pair = "", ...attributes] = line.split(";");
        const eq = pair.indexOf("=");
        if (eq < 1) continue;
        const name = pair.slice(0, eq).trim();
        const value = pair.slice(eq + 1).trim();
        if (isExpiring(attributes) || value === "") cookies.delete(name);
        else cookies.set(name, value);
      }
    },
    addTo(headers) {
      if (cookies.size) headers.set("cookie", [...cookies].map(([k, v]) => `${k}=${v}`).join("; "));
    },
  };
}

const MAX_REDIRECTS = 20;

export function createPageWalker(): PageWalker {
  const jar = createCookieJar();

  const request = async (url: string, init: RequestInit = {}) => {
    const headers = new Headers(init.headers);
    jar.addTo(headers);
    const res = await fetch(url, { ...init, headers, redirect: "manual" });
    jar.store(res);
    return res;
  };

  const navigate: PageWalker["navigate"] = async (url, init = {}, stopAt) => {
    let current = new URL(url);
    let res = await request(current.href, init);
    for (let hops = 0; hops < MAX_REDIRECTS; hops++) {
      const location = res.headers.get("location");
      if (res.status < 300 || res.status >= 400 || !location) {
        if (!res.ok) {
          const body = await res.text();
          throw new Error(`${init.method ?? "GET"} ${current.pathname}: HTTP ${res.status} ${body.slice(0, 300)}`);
        }
        return { page: res, url: current };
      }
      await res.body?.cancel();
      current = new URL(location, current);
      if (stopAt && current.href.startsWith(stopAt)) return { url: current };
      res = await request(current.href);
    }
    throw new Error(`more than ${MAX_REDIRECTS} redirects from ${new URL(url).pathname}`);
  };

  return { navigate };
}

function decodeEntities(s: string): string {
  return s
    .replace(/&quot;/g, '"')
    .replace(/&#x27;|&#39;/g, "'")
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&amp;/g, "&");
}

/** The action and hidden inputs of the first form in an oidc-provider page. */
export function parseForm(html: string, base: URL): { readonly action: URL; readonly fields: URLSearchParams } {
  const form = /<form[^>]*action="([^"]*)"/i.exec(html);
  if (!form) throw new Error(`no form in page: ${html.slice(0, 300)}`);
  const fields = new URLSearchParams();
  for (const m of html.matchAll(/<input[^>]*type="hidden"[^>]*>/gi)) {
    const name = /name="([^"]*)"/.exec(m[0])?.[1];
    const value = /value="([^"]*)"/.exec(m[0])?.[1] ?? "";
    if (name) fields.append(decodeEntities(name), decodeEntities(value));
  }
  return { action: new URL(decodeEntities(form[1] ?? ""), base), fields };
}
