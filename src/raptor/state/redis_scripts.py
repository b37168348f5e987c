"""Lua scripts of the Redis state store, and the byte formats they share with Python. Pure.

Nothing here imports ``redis``: this module is the wire contract between
:mod:`raptor.state.redis` (which sends the scripts) and Redis' Lua 5.1 interpreter, so it can be
unit-tested without a server.

Why binary formats: Lua numbers are doubles, so a 64-bit int cannot travel through Lua as a
number. Every int crossing into Lua is split into ``(hi, lo)`` with ``x = hi * 2**32 + lo`` and
``0 <= lo < 2**32`` (both exact doubles); a float travels as its 8 IEEE bytes with ``lo = -1`` as
the tag. Lua adds ``(hi, lo)`` pairs with a carry, so int sums stay exact (beyond int64, even),
and adds floats in double arithmetic in the same order as the in-memory store, so results are
bit-identical. ``struct`` (bundled with Redis' Lua) packs and unpacks these bytes.

Formats (big-endian):

* **Values** (one string per feature and entity): entries back to back, current value first,
  then previous versions; each is ``>ddI`` timestamp, the last instant it is alive (epoch µs;
  ``2**63`` = never, ``-2**63`` = a version that had expired when it was shifted, absent for
  good) and the body length, then the body: the value as msgpack (msgspec). APPEND rewrites a
  msgpack array header in Lua; INCR decodes and encodes msgpack numbers in Lua.
* **Event** (window adds, 17 bytes): ``>d`` bucket (or event time for future events), then a
  number: ``B`` tag 0 + ``>iI`` (hi, lo) for an int, tag 1 + ``>d`` for a float.
* **Partial** (a bucket field ``"<level>:<index>"``, and the reply of a window read):
  ``>Bd`` tag bits (1 sum, 2 min, 4 max are floats) and count, then sum (int ``>dI``, float
  ``>d``), min and max (int ``>iI``, float ``>d``).
* **Window meta** (field ``"m"`` of the window hash): ``>ddd`` next prune time, pending sequence
  number, the latest bucket expiry the hash TTL was set for, then one ``>d`` per level: the
  lowest bucket index that may still be present.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

from raptor.api.windows import Partial

__all__ = [
    "READ_WINDOW",
    "WINDOW_ADD",
    "WRITE",
    "Script",
    "decode_partial",
    "encode_events",
    "encode_number",
]

_INT_EVENT = struct.Struct(">dBiI")
_FLOAT_EVENT = struct.Struct(">dBd")
_HEAD = struct.Struct(">Bd")
_D = struct.Struct(">d")
_DI = struct.Struct(">dI")
_II = struct.Struct(">iI")
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


class Script:
    """A Lua script and its SHA1 (the EVALSHA handle)."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


def encode_number(x: Any) -> tuple[int, float | int]:
    """The ``(tag, payload)`` of a window value: tag 0 int, 1 float. Bools count as ints; any
    other value counts as int 0 (only ``count`` is meaningful for non-numeric features)."""
    if type(x) is float:
        return 1, x
    if isinstance(x, int):
        if not _INT64_MIN <= x <= _INT64_MAX:
            raise OverflowError(f"window value {x} is outside the 64-bit int range")
        return 0, int(x)
    if isinstance(x, float):
        return 1, float(x)
    return 0, 0


def encode_events(events: list[tuple[int, Any]]) -> bytes:
    """Pack ``(position, value)`` pairs (position = bucket index or event time) for Lua."""
    out = bytearray()
    int_event, lo, hi = _INT_EVENT.pack, _INT64_MIN, _INT64_MAX
    for pos, x in events:
        if type(x) is int and lo <= x <= hi:  # the common case, inlined
            out += int_event(pos, 0, x >> 32, x & 0xFFFFFFFF)
            continue
        tag, v = encode_number(x)
        if tag:
            out += _FLOAT_EVENT.pack(pos, 1, v)
        else:
            iv = int(v)
            out += _INT_EVENT.pack(pos, 0, iv >> 32, iv & 0xFFFFFFFF)
    return bytes(out)


pack_int_event = _INT_EVENT.pack
"""``pack_int_event(pos, 0, x >> 32, x & 0xFFFFFFFF)``: one int event (64-bit ``x``) for Lua."""


def encode_event(pos: int, x: Any) -> bytes:
    """One ``(position, value)`` pair packed for Lua (what :func:`encode_events` appends).
    Raises ``OverflowError`` for an int outside 64 bits."""
    if type(x) is int and _INT64_MIN <= x <= _INT64_MAX:
        return _INT_EVENT.pack(pos, 0, x >> 32, x & 0xFFFFFFFF)
    tag, v = encode_number(x)
    if tag:
        return _FLOAT_EVENT.pack(pos, 1, v)
    iv = int(v)
    return _INT_EVENT.pack(pos, 0, iv >> 32, iv & 0xFFFFFFFF)


def decode_partial(blob: bytes | None) -> Partial:
    """Decode a packed partial (the reply of a window read); empty → the empty partial."""
    if not blob:
        return (0, 0, None, None)
    tag, count = _HEAD.unpack_from(blob, 0)
    pos = _HEAD.size
    s: Any
    if tag & 1:
        (s,) = _D.unpack_from(blob, pos)
        pos += 8
    else:
        hi, lo = _DI.unpack_from(blob, pos)
        s = int(hi) * 4294967296 + lo
        pos += 12
    parts: list[Any] = []
    for bit in (2, 4):
        if tag & bit:
            parts.append(_D.unpack_from(blob, pos)[0])
        else:
            hi, lo = _II.unpack_from(blob, pos)
            parts.append(hi * 4294967296 + lo)
        pos += 8
    return (s, int(count), parts[0], parts[1])


# -- Lua ----------------------------------------------------------------------------------------

_PRELUDE = r"""
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

_WINDOW_LIB = r"""
local NONE = 9007199254740992

local function punpack(s)
  local tag, c, pos = struct.unpack('>Bd', s)
  local p = {c}
  if tag % 2 == 1 then p[2], pos = struct.unpack('>d', s, pos); p[3] = -1
  else p[2], p[3], pos = struct.unpack('>dI4', s, pos) end
  if tag % 4 >= 2 then p[4], pos = struct.unpack('>d', s, pos); p[5] = -1
  else p[4], p[5], pos = struct.unpack('>i4I4', s, pos) end
  if tag >= 4 then p[6] = struct.unpack('>d', s, pos); p[7] = -1
  else p[6], p[7] = struct.unpack('>i4I4', s, pos) end
  return p
end

local function ppack(p)
  local tag, s, n, x = 0, nil, nil, nil
  if p[3] < 0 then tag = 1; s = struct.pack('>d', p[2]) else s = struct.pack('>dI4', p[2], p[3]) end
  if p[5] < 0 then tag = tag + 2; n = struct.pack('>d', p[4])
  else n = struct.pack('>i4I4', p[4], p[5]) end
  if p[7] < 0 then tag = tag + 4; x = struct.pack('>d', p[6])
  else x = struct.pack('>i4I4', p[6], p[7]) end
  return struct.pack('>Bd', tag, p[1]) .. s .. n .. x
end

local function fold(p, a, b)
  if not p then return {1, a, b, a, b, a, b} end
  p[1] = p[1] + 1
  p[2], p[3] = nadd(p[2], p[3], a, b)
  if nless(a, b, p[4], p[5]) then p[4], p[5] = a, b end
  if nless(p[6], p[7], a, b) then p[6], p[7] = a, b end
  return p
end

-- one number of an event at pos: returns a, b, next pos
local function rnum(s, pos)
  local tag
  tag, pos = struct.unpack('>B', s, pos)
  if tag == 0 then return struct.unpack('>i4I4', s, pos) end
  local v
  v, pos = struct.unpack('>d', s, pos)
  return v, -1, pos
end

local function mload(blob, levels)
  local m = {np = 0, seq = 0, x = 0, lo = {}}
  if blob then
    local pos
    m.np, m.seq, m.x, pos = struct.unpack('>ddd', blob)
    for l = 1, levels do m.lo[l], pos = struct.unpack('>d', blob, pos) end
  else
    for l = 1, levels do m.lo[l] = NONE end
  end
  return m
end

local function mpack(m, levels)
  local parts = {struct.pack('>ddd', m.np, m.seq, m.x)}
  for l = 1, levels do parts[l + 1] = struct.pack('>d', m.lo[l]) end
  return table.concat(parts)
end

-- The bucket fields of events (level-0 bucket eb[k]) at every level: names[k, level], the
-- distinct fields after 'm' (the meta) in first-seen order, the lowest index per level and the
-- latest expiry among them.
local function targets(eb, g, tail, levels)
  local names, seen, list, lows, maxexp = {}, {}, {'m'}, {}, nil
  local prev = nil
  for k = 1, #eb do
    local b, width = eb[k], g
    if b == prev then  -- the bucket of the event before (the common case): the same fields
      local base = (k - 1) * levels
      for l = 1, levels do names[base + l] = names[base - levels + l] end
    else
      prev = b
      for l = 0, levels - 1 do
        local f = string.format('%d:%d', l, b)
        names[(k - 1) * levels + l + 1] = f
        if not seen[f] then
          seen[f] = true
          list[#list + 1] = f
          if not lows[l + 1] or b < lows[l + 1] then lows[l + 1] = b end
          local e = (b + 1) * width + tail
          if not maxexp or e > maxexp then maxexp = e end
        end
        b = fdiv(b, 8)
        width = width * 8
      end
    end
  end
  return names, list, lows, maxexp
end

-- Merge the partial r of int events into p (nil: a copy of r). Exact: int sums, counts, min
-- and max do not depend on the order of the additions.
local function merge(p, r)
  if not p then return {r[1], r[2], r[3], r[4], r[5], r[6], r[7]} end
  p[1] = p[1] + r[1]
  p[2], p[3] = nadd(p[2], p[3], r[2], r[3])
  if nless(r[4], r[5], p[4], p[5]) then p[4], p[5] = r[4], r[5] end
  if nless(p[6], p[7], r[6], r[7]) then p[6], p[7] = r[6], r[7] end
  return p
end

-- Fold the events, in order, into the partials loaded for list (cur = HMGET of list); returns
-- the HSET arguments of every touched bucket. A run of int events in one bucket is folded
-- once and merged into each level (exact); floats are added one by one, in order, into a
-- partial that holds a float sum (so float sums keep the in-memory store's order).
local function foldall(list, cur, names, ea, ebb, levels)
  local cache = {}
  for i = 2, #list do cache[list[i]] = cur[i] and punpack(cur[i]) or false end
  local n, k = #ea, 1
  while k <= n do
    local base = (k - 1) * levels
    local j = k
    if ebb[k] >= 0 then
      local f1 = names[base + 1]
      while j < n and ebb[j + 1] >= 0 and names[j * levels + 1] == f1 do j = j + 1 end
    end
    if j > k then
      local r = fold(nil, ea[k], ebb[k])
      for q = k + 1, j do r = fold(r, ea[q], ebb[q]) end
      for l = 1, levels do
        local f = names[base + l]
        local p = cache[f] or nil
        if p and p[3] < 0 then  -- a float sum: add the events in order
          for q = k, j do p = fold(p, ea[q], ebb[q]) end
          cache[f] = p
        else
          cache[f] = merge(p, r)
        end
      end
    else
      local a, bb = ea[k], ebb[k]
      for l = 1, levels do
        local f = names[base + l]
        cache[f] = fold(cache[f] or nil, a, bb)
      end
    end
    k = j + 1
  end
  local args = {}
  for i = 2, #list do
    args[#args + 1] = list[i]
    args[#args + 1] = ppack(cache[list[i]])
  end
  return args
end

local function lower(m, lows, levels)
  for l = 1, levels do
    if lows[l] and lows[l] < m.lo[l] then m.lo[l] = lows[l] end
  end
end

-- Extend the hash TTL (relative to now) only when a bucket that expires later appeared.
local function expire(m, want)
  if not want or want <= m.x then return false end
  m.x = want
  return true
end

local function pexpire(key, want, now, floor)
  local ms = math.ceil((want - now) / 1000)
  if ms < floor then ms = floor end
  if ms < 1 then ms = 1 end
  redis.call('PEXPIRE', key, ms)
end
"""

WRITE = Script(
    _PRELUDE
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

_WINDOW_ADD_BODY = r"""
-- KEYS[1] window hash, KEYS[2] pending zset. ARGV: now, granularity, tail (window + grace),
-- levels, ttl floor (ms), events (level-0 bucket + number), future events (time + number).
local hkey, zkey = KEYS[1], KEYS[2]
local now, g, tail = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local levels, floor = tonumber(ARGV[4]), tonumber(ARGV[5])
local ev, fu = ARGV[6], ARGV[7]
local eb, ea, ebb = {}, {}, {}
local pos, _ = 1, nil
for k = 1, #ev / 17 do  -- one unpack per event: the tag byte picks the format
  if string.byte(ev, pos + 8) == 0 then
    eb[k], _, ea[k], ebb[k], pos = struct.unpack('>dBi4I4', ev, pos)
  else
    eb[k], _, ea[k], pos = struct.unpack('>dBd', ev, pos)
    ebb[k] = -1
  end
end
local names, list, lows, want = targets(eb, g, tail, levels)
local cur = chunked('HMGET', hkey, list)
local m = mload(cur[1], levels)
lower(m, lows, levels)
local args = foldall(list, cur, names, ea, ebb, levels)

if #fu > 0 then
  if not cur[1] then  -- a new meta next to older future events: never reuse their numbers
    for _, v in ipairs(redis.call('ZRANGE', zkey, 0, -1)) do
      local q = struct.unpack('>d', v)
      if q > m.seq then m.seq = q end
    end
  end
  local zargs, zexp = {}, nil
  local top = g * 8 ^ (levels - 1)
  for k = 1, #fu / 17 do
    local s = (k - 1) * 17 + 1
    local t = struct.unpack('>d', fu, s)
    m.seq = m.seq + 1
    zargs[#zargs + 1] = string.format('%d', t)
    zargs[#zargs + 1] = struct.pack('>d', m.seq) .. string.sub(fu, s + 8, s + 16)
    local e = (fdiv(t, top) + 1) * top + tail
    if not zexp or e > zexp then zexp = e end
  end
  chunked('ZADD', zkey, zargs)
  ttl(zkey, zexp, now, floor)
  if not want or zexp > want then want = zexp end
end

if now >= m.np then
  local dead, width, scan = {}, g, false
  for l = 1, levels do
    local last = fdiv(now - tail, width) - 1
    if m.lo[l] <= last and last - m.lo[l] > 512 then scan = true end
    width = width * 8
  end
  if scan then
    for _, f in ipairs(redis.call('HKEYS', hkey)) do
      local l, i = string.match(f, '^(%d+):(%-?%d+)$')
      if l then
        l, i = tonumber(l), tonumber(i)
        if (i + 1) * g * 8 ^ l + tail <= now then dead[#dead + 1] = f end
      end
    end
    width = g
    for l = 1, levels do
      local last = fdiv(now - tail, width) - 1
      if m.lo[l] <= last then m.lo[l] = last + 1 end
      width = width * 8
    end
  else
    width = g
    for l = 1, levels do
      local last = fdiv(now - tail, width) - 1
      if m.lo[l] <= last then
        for i = m.lo[l], last do dead[#dead + 1] = string.format('%d:%d', l - 1, i) end
        m.lo[l] = last + 1
      end
      width = width * 8
    end
  end
  if #dead > 0 then chunked('HDEL', hkey, dead) end
  m.np = now + g
end
local extend = expire(m, want)
args[#args + 1] = 'm'
args[#args + 1] = mpack(m, levels)
chunked('HSET', hkey, args)
if extend then pexpire(hkey, want, now, floor) end
return 1
"""

WINDOW_ADD = Script(_PRELUDE + _WINDOW_LIB + _WINDOW_ADD_BODY)

READ_WINDOW = Script(
    _PRELUDE
    + _WINDOW_LIB
    + r"""
-- KEYS[1] window hash, KEYS[2] pending zset. ARGV: at, granularity, tail, levels, ttl floor,
-- buckets (n), then the cover's fields. Folds due future events, returns the merged partial.
local hkey, zkey = KEYS[1], KEYS[2]
local at = tonumber(ARGV[1])
local head = redis.call('ZRANGE', zkey, 0, 0, 'WITHSCORES')
if head[2] and tonumber(head[2]) <= at then
  local g, tail = tonumber(ARGV[2]), tonumber(ARGV[3])
  local levels, floor, nb = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
  local due = redis.call('ZRANGEBYSCORE', zkey, '-inf', ARGV[1], 'WITHSCORES')
  redis.call('ZREMRANGEBYSCORE', zkey, '-inf', ARGV[1])
  local oldest = fdiv(at, g) - nb + 1
  local eb, ea, ebb = {}, {}, {}
  for i = 1, #due, 2 do
    local b = fdiv(tonumber(due[i + 1]), g)
    if b >= oldest then
      local k = #eb + 1
      eb[k] = b
      ea[k], ebb[k] = rnum(due[i], 9)
    end
  end
  if #eb > 0 then
    local names, list, lows, want = targets(eb, g, tail, levels)
    local cur = chunked('HMGET', hkey, list)
    local m = mload(cur[1], levels)
    lower(m, lows, levels)
    local args = foldall(list, cur, names, ea, ebb, levels)
    local extend = expire(m, want)
    args[#args + 1] = 'm'
    args[#args + 1] = mpack(m, levels)
    chunked('HSET', hkey, args)
    if extend then pexpire(hkey, want, at, floor) end
  end
end
local vals = redis.call('HMGET', hkey, unpack(ARGV, 7))
local acc = nil
for _, v in ipairs(vals) do
  if v then
    local p = punpack(v)
    if not acc then acc = p
    else
      acc[1] = acc[1] + p[1]
      acc[2], acc[3] = nadd(acc[2], acc[3], p[2], p[3])
      if nless(p[4], p[5], acc[4], acc[5]) then acc[4], acc[5] = p[4], p[5] end
      if nless(acc[6], acc[7], p[6], p[7]) then acc[6], acc[7] = p[6], p[7] end
    end
  end
end
if not acc then return '' end
return ppack(acc)
"""
)


# -- checkpoints (raptor.state.CheckpointStore) -------------------------------------------------
#
# The fenced scripts run the very same WRITE / WINDOW_ADD code, wrapped as a Lua function, after
# checking the (feature, entity)'s fence hash (one field per ``source|partition``: the last
# position applied) and before moving it — all in one script, on the slot of the feature+entity.
# Positions are decimal-digit strings: ``newer`` compares them as numbers (length, then text).

_NEWER = r"""
local function newer(a, b)
  if not b then return true end
  if #a ~= #b then return #a > #b end
  return a > b
end
"""


def _wrapped(script: Script) -> str:
    return "local function inner_script(KEYS, ARGV)\n" + script.source + "\nend\n" + _NEWER


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

FENCED_WINDOW_ADD = Script(
    # The helpers are defined once per call (not once per group): the body of WINDOW_ADD is
    # the function, the prelude and the window library stay at the top level.
    _PRELUDE
    + _WINDOW_LIB
    + "local function inner_script(KEYS, ARGV)\n"
    + _WINDOW_ADD_BODY
    + "\nend\n"
    + _NEWER
    + r"""
-- Groups of 3 KEYS each (fence hash, window hash, pending zset of one (feature, entity)) and
-- 11 ARGV each: fence field, fence TTL (ms), the positions of the regular / future events
-- (comma-separated, each list in order), then WINDOW_ADD's 7 arguments. Events at or before
-- the group's fence are dropped. Returns {skipped regular, skipped future} of every group,
-- flat, in order. Groups are applied one after the other (in Cluster, one group per call).

-- blob without the events at or before fence; returns the blob, the number skipped and the
-- newest position kept (or top)
local function keep(blob, list, fence, top)
  if list == '' then return blob, 0, top end
  if newer(string.match(list, '^[^,]+'), fence) then  -- in order: nothing is a replay
    local comma = string.find(string.reverse(list), ',', 1, true)
    local last = comma and string.sub(list, #list - comma + 2) or list
    if not top or newer(last, top) then top = last end
    return blob, 0, top
  end
  local parts, skipped, k = {}, 0, 0
  for p in string.gmatch(list, '[^,]+') do
    k = k + 1
    if newer(p, fence) then
      parts[#parts + 1] = string.sub(blob, (k - 1) * 17 + 1, k * 17)
      if not top or newer(p, top) then top = p end
    else
      skipped = skipped + 1
    end
  end
  if skipped == 0 then return blob, 0, top end
  return table.concat(parts), skipped, top
end

local out = {}
for grp = 0, #KEYS / 3 - 1 do
  local kb, ab = grp * 3, grp * 11
  local fkey, field = KEYS[kb + 1], ARGV[ab + 1]
  local fence = redis.call('HGET', fkey, field)
  local args = {}
  for i = 1, 7 do args[i] = ARGV[ab + 4 + i] end
  local sr, sf, top
  args[6], sr, top = keep(args[6], ARGV[ab + 3], fence, nil)
  args[7], sf, top = keep(args[7], ARGV[ab + 4], fence, top)
  if top then
    local r = inner_script({KEYS[kb + 2], KEYS[kb + 3]}, args)
    if type(r) == 'table' and r.err then return r end
    redis.call('HSET', fkey, field, top)
    redis.call('PEXPIRE', fkey, ARGV[ab + 2])
  end
  out[#out + 1] = sr
  out[#out + 1] = sf
end
return out
"""
)

RECORD_POSITIONS = Script(
    _NEWER
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

__all__ += ["encode_event", "pack_int_event"]
__all__ += ["FENCED_WINDOW_ADD", "FENCED_WRITE", "RECORD_POSITIONS"]
