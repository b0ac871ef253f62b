/**
 * The Lua scripts of redisStore. Each runs atomically on the Redis server (one script at a
 * time), so a check and the write it guards cannot be separated by another client's command.
 *
 * Keys: KEYS[1] the login (a hash: `version`, the number of writes so far, and `value`, the
 * serialized — possibly encrypted — login; a cleared login keeps its `version`), KEYS[2] the
 * lease (a string: the holder's random token, with a PX expiry). Both keys must live in one
 * hash slot on Redis Cluster (see leaseKey in options.ts).
 */

/** SET NX PX: take the lease if nobody holds it. Returns 1 when taken, 0 when held by another. */
export const ACQUIRE = `
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0`;

/** Extend the lease, only while it is still ours. Returns 1 when extended, 0 when lost. */
export const RENEW = `
if redis.call('GET', KEYS[2]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
return 0`;

/** Give the lease back, only if it is still ours (never another holder's). */
export const RELEASE = `
if redis.call('GET', KEYS[2]) == ARGV[1] then return redis.call('DEL', KEYS[2]) end
return 0`;

/**
 * Read the login. ARGV[1]: our lease token, or "" outside a lease; ARGV[2]: the lease's PX.
 * A lease of ours that ran out while nobody took it is taken again (nothing was done under
 * it yet: the read is the first step of a refresh). Returns { lease (1 held, 2 taken again,
 * 0 another process holds it; 1 outside a lease), version (-1: the key is not a hash), value or nil }.
 */
export const LOAD = `
local lease = 1
if ARGV[1] ~= '' then
  local holder = redis.call('GET', KEYS[2])
  if not holder then
    redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
    lease = 2
  elseif holder ~= ARGV[1] then
    lease = 0
  end
end
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'none' then return { lease, 0, false } end
if kind ~= 'hash' then return { lease, -1, false } end
local fields = redis.call('HMGET', KEYS[1], 'version', 'value')
return { lease, tonumber(fields[1]) or 0, fields[2] }`;

/**
 * Is the lease still ours, right before a step that must not overlap another holder's (the
 * request to the identity provider)? ARGV[1]: our lease token; ARGV[2]: the lease's PX;
 * ARGV[3]: the version read under this lease, or "". Ours: renewed for a full lease (1).
 * Ran out and nobody took it, and nobody wrote since our read: taken again (2). Otherwise 0.
 */
export const CONFIRM = `
local holder = redis.call('GET', KEYS[2])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return 1
end
if holder then return 0 end
if ARGV[3] ~= '' then
  local current = 0
  if redis.call('TYPE', KEYS[1]).ok == 'hash' then current = tonumber(redis.call('HGET', KEYS[1], 'version')) or 0 end
  if current ~= tonumber(ARGV[3]) then return 0 end
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 2`;

/**
 * Write (or, ARGV[4] == "clear", remove) the login, fenced. ARGV[1]: our lease token or "";
 * ARGV[2]: the version we read under this lease (or last saw, see store.ts), or "" if none;
 * ARGV[3]: the value; ARGV[5]: the version the value was sealed for (encryption binds it), or "".
 * - with a version read: written only if nobody wrote since (compare-and-set);
 * - without one, under a lease: written only while the lease is still ours;
 * - outside any lease: written;
 * and in every case only as the version it was sealed for. A key of another type (a corrupt
 * value) is replaced. Returns { written (1/0), version now }.
 */
export const SAVE = `
local kind = redis.call('TYPE', KEYS[1]).ok
local current = 0
if kind == 'hash' then current = tonumber(redis.call('HGET', KEYS[1], 'version')) or 0 end
if ARGV[5] ~= '' and current + 1 ~= tonumber(ARGV[5]) then return { 0, current } end
if ARGV[2] ~= '' then
  if current ~= tonumber(ARGV[2]) then return { 0, current } end
elseif ARGV[1] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return { 0, current }
end
if kind ~= 'hash' and kind ~= 'none' then redis.call('DEL', KEYS[1]) end
local version = current + 1
if ARGV[4] == 'clear' then
  redis.call('HDEL', KEYS[1], 'value')
  redis.call('HSET', KEYS[1], 'version', version)
else
  redis.call('HSET', KEYS[1], 'version', version, 'value', ARGV[3])
end
return { 1, version }`;
