"""Lua scripts of the Redis state store for windows: add events, read a window. Pure.

Nothing here imports ``redis``. The window library (packed partials, the window meta, bucket
targets, exact folding, TTLs) is Lua shared by :data:`WINDOW_ADD`, :data:`READ_WINDOW` and
:data:`FENCED_WINDOW_ADD`: each script is :data:`~raptor.state.redis_scripts.PRELUDE`, this
library and its own body. The byte formats are in :mod:`raptor.state.redis_codec`.
"""

from __future__ import annotations

from raptor.state.redis_scripts import NEWER, PRELUDE, Script

__all__ = ["FENCED_WINDOW_ADD", "READ_WINDOW", "WINDOW_ADD"]

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

WINDOW_ADD = Script(PRELUDE + _WINDOW_LIB + _WINDOW_ADD_BODY)

READ_WINDOW = Script(
    PRELUDE
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
# FENCED_WINDOW_ADD runs the very same WINDOW_ADD body, wrapped as a Lua function, after
# checking the fence of each group; see raptor.state.redis_scripts for fences and positions.

FENCED_WINDOW_ADD = Script(
    # The helpers are defined once per call (not once per group): the body of WINDOW_ADD is
    # the function, the prelude and the window library stay at the top level.
    PRELUDE
    + _WINDOW_LIB
    + "local function inner_script(KEYS, ARGV)\n"
    + _WINDOW_ADD_BODY
    + "\nend\n"
    + NEWER
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
