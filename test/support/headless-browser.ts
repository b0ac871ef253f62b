/**
 * A headless "browser" for login tests: a cookie jar and a redirect follower, enough
 * to walk oidc-provider's authorization pages (auto-approved by the test IdP's
 * interaction handler) all the way to a loopback redirect listener, which it requests
 * like a real browser would. The cookie jar is the one connect-oidc/testing's page walker uses.
 */
import { createCookieJar } from "../../src/testing/page-walker.js";

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
