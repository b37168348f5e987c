"""Lua scripts of the Redis state store that write values, and what every script shares. Pure.

Nothing here imports ``redis``: with :mod:`raptor.state.redis_window_scripts` (the window
scripts) this is the Lua side of the wire contract between :mod:`raptor.state.redis` (which
sends the scripts) and Redis' Lua 5.1 interpreter; the byte formats, and the Python side of
them, are in :mod:`raptor.state.redis_codec`.

Shared here: :class:`Script` (a source and its EVALSHA handle), :data:`PRELUDE` (exact
``(hi, lo)`` number arithmetic, TTLs, chunked commands) and :data:`NEWER` (position order).
Scripts: :data:`WRITE` (SET / APPEND / INCR of a values string, shifting previous versions),
its fenced twin :data:`FENCED_WRITE`, and :data:`RECORD_POSITIONS` (checkpoints).
"""

from __future__ import annotations

import hashlib

__all__ = [
    "FENCED_WRITE",
    "NEWER",
    "PRELUDE",
    "RECORD_POSITIONS",
    "WRITE",
    "Script",
]


class Script:
    """A Lua script and its SHA1 (the EVALSHA handle)."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


# -- Lua ----------------------------------------------------------------------------------------

PRELUDE = r"""
local TWO32 = 4294967296
local CHUNK = 400

local function tof(a, b) if b < 0 then return a end return a * TWO32 + b end

local function nadd(a1, b1, a2, b2)
  if b1 >= 0 and b2 >= 0 then
    local hi, lo = a1 + a2, b1 + b2
    if lo >= TWO32 then return hi + 1, lo - TWO32 end
    return hi, lo
  end
  return tof(a1, b1) + tof(a2, b2), -1
end

-- a < b exactly, as Python compares int/float (an int equal to a float as doubles is split)
local function nless(a1, b1, a2, b2)
  if b1 < 0 or b2 < 0 then
    local x, y = tof(a1, b1), tof(a2, b2)
    if x ~= y or (b1 < 0 and b2 < 0) then return x < y end
    if b1 < 0 then a1 = math.floor(x / TWO32); b1 = x - a1 * TWO32 end
    if b2 < 0 then a2 = math.floor(y / TWO32); b2 = y - a2 * TWO32 end
  end
  return a1 < a2 or (a1 == a2 and b1 < b2)
end

local function fdiv(t, g)
  local q = math.floor(t / g)
  if q * g > t then q = q - 1 elseif (q + 1) * g <= t then q = q + 1 end
  return q
end

local function ttl(key, want, now, floor)
  local ms = math.ceil((want - now) / 1000)
  if ms < floor then ms = floor end
  if ms < 1 then ms = 1 end
  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, ms) end
end

local function chunked(cmd, key, list)
  if #list <= CHUNK then return redis.call(cmd, key, unpack(list)) end  -- the common case
  local out = {}
  for i = 1, #list, CHUNK do
    local r = redis.call(cmd, key, unpack(list, i, math.min(i + CHUNK - 1, #list)))
    if type(r) == 'table' then for _, v in ipairs(r) do out[#out + 1] = v end end
  end
  return out
end
"""
"""Helpers every script starts with: exact number arithmetic, TTLs, chunked commands."""

WRITE = Script(
    PRELUDE
    + r"""
-- KEYS[1] values string. ARGV: op (s|a|i), msgpack blob, timestamp, now, staleness, versions,
-- version_ttl, ttl floor (ms). Returns false (older write ignored), 1 (set) or the new body.
local key = KEYS[1]
local op, blob = ARGV[1], ARGV[2]
local ts, now = tonumber(ARGV[3]), tonumber(ARGV[4])
local stale, nver, vttl = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local floor = tonumber(ARGV[8])

local function small(v) if v >= 0 then return 0, v end return -1, v + TWO32 end

local function mpnum(s)
  local c = string.byte(s, 1)
  if not c then return nil end
  if c <= 0x7f then return 0, c end
  if c >= 0xe0 then return -1, c - 256 + TWO32 end
  if c == 0xcb then return (struct.unpack('>d', s, 2)), -1 end
  if c == 0xca then return (struct.unpack('>f', s, 2)), -1 end
  if c == 0xcc then return 0, string.byte(s, 2) end
  if c == 0xcd then return 0, (struct.unpack('>I2', s, 2)) end
  if c == 0xce then return 0, (struct.unpack('>I4', s, 2)) end
  if c == 0xcf then local h, l = struct.unpack('>I4I4', s, 2); return h, l end
  if c == 0xd0 then return small((struct.unpack('>i1', s, 2))) end
  if c == 0xd1 then return small((struct.unpack('>i2', s, 2))) end
  if c == 0xd2 then return small((struct.unpack('>i4', s, 2))) end
  if c == 0xd3 then local h, l = struct.unpack('>i4I4', s, 2); return h, l end
  return nil
end

local function mpenc(a, b)
  if b < 0 then return '\203' .. struct.pack('>d', a) end
  if a >= -2147483648 and a < 2147483648 then return '\211' .. struct.pack('>i4I4', a, b) end
  if a >= 0 and a < TWO32 then return '\207' .. struct.pack('>I4I4', a, b) end
  return nil
end

local function arrhead(n)
  if n < 16 then return string.char(0x90 + n) end
  if n < 65536 then return '\220' .. struct.pack('>I2', n) end
  return '\221' .. struct.pack('>I4', n)
end

local function append(s, elem)
  local c = string.byte(s, 1)
  local n, body
  if c and c >= 0x90 and c <= 0x9f then n = c - 0x90; body = string.sub(s, 2)
  elseif c == 0xdc then n = struct.unpack('>I2', s, 2); body = string.sub(s, 4)
  elseif c == 0xdd then n = struct.unpack('>I4', s, 2); body = string.sub(s, 6)
  else return nil end
  return arrhead(n + 1) .. body .. elem
end

local NEVER, GONE = 9223372036854775808, -9223372036854775808
local entries = {}
local old = redis.call('GET', key)
if old then
  local pos, n = 1, #old
  while pos <= n do
    local ets, eexp, len
    ets, eexp, len, pos = struct.unpack('>ddI4', old, pos)
    entries[#entries + 1] = {ets, eexp, string.sub(old, pos, pos + len - 1)}
    pos = pos + len
  end
end
local cur = entries[1]
local live = cur ~= nil and now <= cur[2]
if live and ts < cur[1] then return false end

local body = blob
if op == 'a' then
  if live then
    body = append(cur[3], blob)
    if not body then return redis.error_reply('RAPTOR append to a value that is not a list') end
  else
    body = arrhead(1) .. blob
  end
elseif op == 'i' and live then
  local a1, b1 = mpnum(cur[3])
  local a2, b2 = mpnum(blob)
  if not a1 or not a2 then return redis.error_reply('RAPTOR incr of a non-number') end
  body = mpenc(nadd(a1, b1, a2, b2))
  if not body then return redis.error_reply('RAPTOR incr overflows a 64-bit int') end
end

local exp = NEVER
if stale > 0 then exp = ts + stale end
local maxexp = exp
local out = {struct.pack('>ddI4', ts, exp, #body), body}
if nver > 0 and cur then
  local shifted, last = {}, 0
  for i = 1, math.min(#entries, nver) do
    local e = entries[i]
    if now > e[2] then
      shifted[i] = struct.pack('>ddI4', 0, GONE, 0)
    else
      local nexp = NEVER
      if vttl > 0 then nexp = now + i * vttl end
      if nexp > maxexp then maxexp = nexp end
      shifted[i] = struct.pack('>ddI4', e[1], nexp, #e[3]) .. e[3]
      last = i
    end
  end
  for i = 1, last do out[#out + 1] = shifted[i] end
end
local value = table.concat(out)
if maxexp >= NEVER then redis.call('SET', key, value)
else
  local ms = math.ceil((maxexp - now) / 1000)
  if ms < floor then ms = floor end
  if ms < 1 then ms = 1 end
  redis.call('SET', key, value, 'PX', ms)
end
if op == 's' then return 1 end
return body
"""
)


# -- checkpoints (raptor.state.CheckpointStore) -------------------------------------------------
#
# The fenced scripts (FENCED_WRITE here, FENCED_WINDOW_ADD in raptor.state.redis_window_scripts)
# run the very same WRITE / WINDOW_ADD code, wrapped as a Lua function, after checking the
# (feature, entity)'s fence hash (one field per ``source|partition``: the last position applied)
# and before moving it — all in one script, on the slot of the feature+entity.
# Positions are decimal-digit strings: ``newer`` compares them as numbers (length, then text).

NEWER = r"""
local function newer(a, b)
  if not b then return true end
  if #a ~= #b then return #a > #b end
  return a > b
end
"""
"""``newer(a, b)``: position ``a`` comes after ``b`` (or ``b`` is absent)."""


def _wrapped(script: Script) -> str:
    return "local function inner_script(KEYS, ARGV)\n" + script.source + "\nend\n" + NEWER


FENCED_WRITE = Script(
    _wrapped(WRITE)
    + r"""
-- KEYS[1] fence hash, KEYS[2] values hash. ARGV[1] fence field, ARGV[2] position,
-- ARGV[3] fence TTL (ms), then WRITE's arguments. Returns {0} (a replay, skipped) or {1}.
if not newer(ARGV[2], redis.call('HGET', KEYS[1], ARGV[1])) then return {0} end
local args = {}
for i = 4, #ARGV do args[#args + 1] = ARGV[i] end
local r = inner_script({KEYS[2]}, args)
if type(r) == 'table' and r.err then return r end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1}
"""
)

RECORD_POSITIONS = Script(
    NEWER
    + r"""
-- KEYS[1] positions hash of a source. ARGV: partition, position, ... Keeps the newest.
for i = 1, #ARGV, 2 do
  if newer(ARGV[i + 1], redis.call('HGET', KEYS[1], ARGV[i])) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 1
"""
)
