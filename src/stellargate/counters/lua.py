"""The Lua scripts of the Redis counter store. Each runs atomically on the server, one round trip.

Arguments: KEYS are the counters; ARGV holds five values per key (RESERVE): kind (r, c, q), limit,
period, cost, and the request's token (its concurrency slot's member); SETTLE six: kind, limit,
period, cost, actual use, token. Both take one more, last: the trail's length (0: off).
Rates and slots read the server's clock (TIME), so replicas' clocks never matter. Numbers go back
as strings: Redis would truncate a Lua float to an integer.

Rate (GCRA): T = period / limit. tat = max(stored, now); new = tat + cost * T; admitted when
new - now <= period, then stored with an expiry at new (a key whose bucket is full again holds
nothing). Settle adds (actual - cost) * T, never moving the time before now.
Concurrency: a sorted set of tokens scored by their deadline; expired ones are dropped first.
Quota: a hash {c: committed, r: reserved} in integer units (tokens, nano-USD), expiring after
its calendar period; admitted when c + r + cost <= limit (and, at no cost, while c + r < limit).

Trail (length N > 0): each change of a quota is also appended, in the same script, to the stream
``<counter>:trail`` (XADD MAXLEN = N, exact: the last N changes) with the fields t (server time),
op (reserve, settle, or refund when nothing was committed), id (the token), dc and dr (the change
of c and r) and c and r after it; the stream expires with its counter. With the trail on, KEYS
holds each counter's stream after the counters (KEYS[n + i] for counter i), as Redis requires of
every key a script touches; the stream's name is the counter's plus a suffix, so it shares its
hash tag and, on Redis Cluster, its slot. TRAIL reads the last ARGV[1] entries and how many
were ever added (-1 before Redis 7.0, which does not count them).
"""

from __future__ import annotations

RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local trail = tonumber(ARGV[#ARGV]) or 0
local n = #KEYS
if trail > 0 then n = math.floor(n / 2) end
local out = {}
local failed, retry = -1, 0
local news = {}
for i = 1, n do
  local b = (i - 1) * 5
  local kind, limit = ARGV[b + 1], tonumber(ARGV[b + 2])
  local period, cost = tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  local key = KEYS[i]
  local rem, reset = 0, 0
  if kind == 'r' then
    local tat = tonumber(redis.call('GET', key) or '0')
    if tat < now then tat = now end
    local T = period / limit
    local new = tat + cost * T
    local over = new - now - period
    if over > 1e-9 or limit <= 0 then
      rem, reset = (period - (tat - now)) / T, tat - now
      if rem < 0 then rem = 0 end
      if failed < 0 then
        failed = i - 1
        if cost <= limit and limit > 0 then retry = over else retry = period end
      end
    else
      news[i] = new
      rem, reset = (period - (new - now)) / T, new - now
    end
  elseif kind == 'c' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    local used = redis.call('ZCARD', key)
    if used + 1 > limit then
      rem, reset = 0, 1
      if failed < 0 then failed, retry = i - 1, 1 end
    else
      rem = limit - used - 1
    end
  else
    local q = redis.call('HMGET', key, 'c', 'r')
    local left = limit - (tonumber(q[1]) or 0) - (tonumber(q[2]) or 0)
    reset = period
    if cost > left or (cost == 0 and left <= 0) then
      if left < 0 then left = 0 end
      rem = left
      if failed < 0 then failed, retry = i - 1, period end
    else
      rem = left - cost
    end
  end
  out[2 * i + 1] = tostring(rem)
  out[2 * i + 2] = tostring(reset)
end
out[1] = tostring(failed)
out[2] = tostring(retry)
if failed >= 0 then return out end
for i = 1, n do
  local b = (i - 1) * 5
  local kind, period, cost = ARGV[b + 1], tonumber(ARGV[b + 3]), ARGV[b + 4]
  local key = KEYS[i]
  if kind == 'r' then
    redis.call('SET', key, string.format('%.6f', news[i]), 'PX', math.ceil((news[i] - now) * 1000) + 1000)
  elseif kind == 'c' then
    redis.call('ZADD', key, now + period, ARGV[b + 5])
    redis.call('PEXPIRE', key, math.ceil(period * 1000) + 1000)
  else
    local r = redis.call('HINCRBY', key, 'r', cost)
    redis.call('EXPIRE', key, math.ceil(period) + 86400)
    if trail > 0 then
      local tk = KEYS[n + i]
      redis.call('XADD', tk, 'MAXLEN', trail, '*', 't', t[1] .. string.format('.%06d', tonumber(t[2])),
        'op', 'reserve', 'id', ARGV[b + 5], 'dc', '0', 'dr', cost,
        'c', redis.call('HGET', key, 'c') or '0', 'r', string.format('%d', r))
      redis.call('EXPIRE', tk, math.ceil(period) + 86400)
    end
  end
end
return out
"""

SETTLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local trail = tonumber(ARGV[#ARGV]) or 0
local n = #KEYS
if trail > 0 then n = math.floor(n / 2) end
for i = 1, n do
  local b = (i - 1) * 6
  local kind, limit, period = ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  local cost, actual = tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5])
  local key = KEYS[i]
  if kind == 'r' then
    local delta = actual - cost
    local tat = tonumber(redis.call('GET', key) or 'nil')
    if delta ~= 0 and tat and limit > 0 then
      local new = tat + delta * period / limit
      if new <= now then
        redis.call('DEL', key)
      else
        redis.call('SET', key, string.format('%.6f', new), 'PX', math.ceil((new - now) * 1000) + 1000)
      end
    end
  elseif kind == 'c' then
    redis.call('ZREM', key, ARGV[b + 6])
  else
    if redis.call('EXISTS', key) == 1 then
      local r = redis.call('HINCRBY', key, 'r', -cost)
      local c = redis.call('HINCRBY', key, 'c', actual)
      if trail > 0 then
        local tk = KEYS[n + i]
        local op = 'settle'
        if actual == 0 then op = 'refund' end
        redis.call('XADD', tk, 'MAXLEN', trail, '*', 't', t[1] .. string.format('.%06d', tonumber(t[2])),
          'op', op, 'id', ARGV[b + 6], 'dc', ARGV[b + 5], 'dr', string.format('%d', -cost),
          'c', string.format('%d', c), 'r', string.format('%d', r))
        -- A stream first written here (the trail was off at the reservation) must expire too.
        local ttl = redis.call('PTTL', key)
        if ttl > 0 then redis.call('PEXPIRE', tk, ttl) end
      end
    end
  end
end
return 1
"""

READ = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local out = {}
for i = 1, #KEYS do
  local b = (i - 1) * 3
  local kind, limit, period = ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  local key = KEYS[i]
  local used, reserved = 0, 0
  local reset = 0
  if kind == 'r' then
    local tat = tonumber(redis.call('GET', key) or '0')
    local wait = tat - now
    if wait < 0 then wait = 0 end
    used = wait * limit / period
    if used > limit then used = limit end
    reset = wait
  elseif kind == 'c' then
    reserved = redis.call('ZCOUNT', key, now, '+inf')
  else
    local q = redis.call('HMGET', key, 'c', 'r')
    used, reserved, reset = tonumber(q[1]) or 0, tonumber(q[2]) or 0, period
  end
  out[#out + 1] = tostring(used)
  out[#out + 1] = tostring(reserved)
  out[#out + 1] = tostring(reset)
end
return out
"""

TRAIL = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0, {}} end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local length, added = 0, -1
for i = 1, #info, 2 do
  if info[i] == 'length' then length = info[i + 1] end
  if info[i] == 'entries-added' then added = info[i + 1] end
end
return {length, added, redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', ARGV[1])}
"""
