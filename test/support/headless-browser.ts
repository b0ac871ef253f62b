/**
 * A headless "browser" for login tests: a cookie jar and a redirect follower, enough
 * to walk oidc-provider's authorization pages (auto-approved by the test IdP's
 * interaction handler) all the way to a loopback redirect listener, which it requests
 * like a real browser would.
 */

export interface HeadlessPage {
  /** Where the walk ended (the last URL requested). */
  readonly url: URL;
  readonly status: number;
  readonly text: string;
  /** Every URL requested, in order (to check for leaks and to find the loopback port). */
  readonly visited: readonly URL[];
}

export interface HeadlessBrowser {
  /** GET `url`, follow every redirect, return the last page. Network errors reject. */
  open(url: URL | string): Promise<HeadlessPage>;
}

export interface CookieJar {
  /** Keep the cookies a response sets (and drop the ones it expires). */
  store(res: Response): void;
  /** Send the kept cookies with a request. */
  addTo(headers: Headers): void;
}

/** One jar for all hosts: the IdP and a loopback listener never share cookie names that matter. */
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
        const expired = attributes.some((a) => {
          const [k = "", v = ""] = a.split("=");
          const attr = k.trim().toLowerCase();
          if (attr === "max-age") return Number(v) <= 0;
          if (attr === "expires") return Date.parse(v) <= Date.now();
          return false;
        });
        if (expired || value === "") cookies.delete(name);
        else cookies.set(name, value);
      }
    },
    addTo(headers) {
      if (cookies.size) headers.set("cookie", [...cookies].map(([k, v]) => `${k}=${v}`).join("; "));
    },
  };
}

export function createHeadlessBrowser(): HeadlessBrowser {
  const jar = createCookieJar();

  return {
    async open(start) {
      const visited: URL[] = [];
      let current = new URL(start);
      for (let hops = 0; hops < 20; hops++) {
        visited.push(current);
        const headers = new Headers();
        jar.addTo(headers);
        const res = await fetch(current, { headers, redirect: "manual" });
        jar.store(res);
        const location = res.headers.get("location");
        if (res.status >= 300 && res.status < 400 && location) {
          await res.body?.cancel();
          current = new URL(location, current);
          continue;
        }
        return { url: current, status: res.status, text: await res.text(), visited };
      }
      throw new Error("too many redirects");
    },
  };
}
