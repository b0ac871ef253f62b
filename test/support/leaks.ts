/**
 * Token-leak checks: remember every token a test saw, then assert that no event,
 * error (with its whole cause chain) or log text contains any part of one.
 */
import { inspect } from "node:util";

export interface LeakScanner {
  /** Remember tokens (access, refresh, id) to look for. */
  remember(...tokens: (string | undefined)[]): void;
  /** Throws if `value`, rendered every way a user might print it, holds a token fragment. */
  assertClean(value: unknown, label?: string): void;
  readonly count: number;
}

// 16 characters of a token are enough to be a leak and rare enough not to match by chance.
const FRAGMENT = 16;

export function createLeakScanner(): LeakScanner {
  const fragments = new Set<string>();
  return {
    remember(...tokens) {
      for (const t of tokens) {
        if (typeof t !== "string" || t.length < FRAGMENT) continue;
        // JWTs share their header; look at the payload and signature parts too.
        for (const part of [t, ...t.split(".")]) {
          if (part.length < FRAGMENT) continue;
          for (let i = 0; i + FRAGMENT <= part.length; i += FRAGMENT) fragments.add(part.slice(i, i + FRAGMENT));
          fragments.add(part.slice(-FRAGMENT));
        }
      }
    },
    assertClean(value, label = "value") {
      const texts = [inspect(value, { depth: 12, showHidden: false, getters: false }), safeJson(value), String(value)];
      if (value instanceof Error) texts.push(value.message, value.stack ?? "");
      for (const text of texts) {
        for (const f of fragments) {
          if (text.includes(f)) throw new Error(`${label} contains token material (fragment of ${FRAGMENT} chars)`);
        }
      }
    },
    get count() {
      return fragments.size;
    },
  };
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value, (_k, v) => (v instanceof Error ? { ...v, message: v.message, cause: v.cause } : v)) ?? "";
  } catch {
    return "";
  }
}
