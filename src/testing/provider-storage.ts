/**
 * oidc-provider's storage for one test identity provider: a Map per provider, unbounded
 * (the built-in one is a 1000-entry LRU shared by every provider of the process), with the
 * indexes a grant revocation and the device flow need.
 */
import type { Adapter, AdapterPayload } from "oidc-provider";

export interface ProviderStorage {
  /** What oidc-provider's `adapter` option takes. */
  readonly factory: (model: string) => Adapter;
  /** The ids of every grant stored now. */
  grantIds(): string[];
}

export function createProviderStorage(): ProviderStorage {
  const entries = new Map<string, { payload: AdapterPayload; expiresAt: number }>();
  const byGrant = new Map<string, Set<string>>();
  const byUserCode = new Map<string, string>();
  const byUid = new Map<string, string>();

  const get = (key: string | undefined): AdapterPayload | undefined => {
    if (key === undefined) return undefined;
    const entry = entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now()) {
      entries.delete(key);
      return undefined;
    }
    return entry.payload;
  };

  const index = (model: string, key: string, payload: AdapterPayload) => {
    if (payload.grantId) {
      let keys = byGrant.get(payload.grantId);
      if (!keys) {
        keys = new Set();
        byGrant.set(payload.grantId, keys);
      }
      keys.add(key);
    }
    if (payload.userCode) byUserCode.set(payload.userCode, key);
    if (model === "Session" && payload.uid) byUid.set(payload.uid, key);
  };

  const factory = (model: string): Adapter => {
    const key = (id: string) => `${model}:${id}`;
    return {
      async upsert(id, payload, expiresIn) {
        const expiresAt = expiresIn ? Date.now() + expiresIn * 1000 : Number.POSITIVE_INFINITY;
        entries.set(key(id), { payload, expiresAt });
        index(model, key(id), payload);
      },
      async find(id) {
        return get(key(id));
      },
      async findByUserCode(userCode) {
        return get(byUserCode.get(userCode));
      },
      async findByUid(uid) {
        return get(byUid.get(uid));
      },
      async consume(id) {
        const payload = get(key(id));
        if (payload) payload.consumed = Math.floor(Date.now() / 1000);
      },
      async destroy(id) {
        entries.delete(key(id));
      },
      async revokeByGrantId(grantId) {
        for (const k of byGrant.get(grantId) ?? []) entries.delete(k);
        byGrant.delete(grantId);
      },
    };
  };

  const grantIds = () => [...entries.keys()].filter((k) => k.startsWith("Grant:")).map((k) => k.slice("Grant:".length));

  return { factory, grantIds };
}
