#!lua name=ordo_compare
-- The transfer workload as a Redis Functions library (Redis 7).
--
-- Accounts are plain string keys "acct:NNNNNNNNNNNN" (12 digits, zero
-- padded), the format redis-benchmark's __rand_int__ placeholder produces,
-- so `-r ACCOUNTS` picks an account uniformly from 0 .. ACCOUNTS-1.
--
-- A function runs atomically: Redis is single threaded and runs nothing
-- else until it returns. With appendonly yes and appendfsync always, its
-- writes reach the AOF and are fsynced before any reply leaves the server.

local function key(i)
  return string.format('acct:%012d', i)
end

-- FCALL transfer 2 <from-key> <to-key> <amount>
-- Returns 1 when the money moved, 0 for from == to (a no-op: the
-- benchmark's two random keys sometimes coincide) and -1, with nothing
-- written, for insufficient funds: an ordinary business abort, answered
-- like PostgreSQL's transfer() answers it. (redis-benchmark stops at the
-- first error reply, so an abort must not be one.) A missing account is a
-- setup mistake and returns an error.
local function transfer(keys, args)
  local from, to = keys[1], keys[2]
  local amount = tonumber(args[1])
  if amount == nil or amount < 0 then
    return redis.error_reply('bad amount')
  end
  if from == to then
    return 0
  end
  local from_balance = tonumber(redis.call('GET', from))
  local to_balance = tonumber(redis.call('GET', to))
  if from_balance == nil or to_balance == nil then
    return redis.error_reply('no such account')
  end
  if from_balance < amount then
    return -1
  end
  redis.call('SET', from, from_balance - amount)
  redis.call('SET', to, to_balance + amount)
  return 1
end

-- FCALL open_accounts 0 <first> <count> <balance>
-- Creates accounts first .. first+count-1. Standalone Redis only: it
-- touches keys it does not declare, which is fine outside cluster mode.
local function open_accounts(_, args)
  local first, count, balance = tonumber(args[1]), tonumber(args[2]), tonumber(args[3])
  for i = first, first + count - 1 do
    redis.call('SET', key(i), balance)
  end
  return count
end

-- FCALL_RO total 0 <accounts> <initial balance>
-- Returns {sum of balances, accounts found, accounts whose balance is not
-- the initial one} over accounts 0 .. N-1.
local function total(_, args)
  local n, initial = tonumber(args[1]), tonumber(args[2])
  local sum, found, changed = 0, 0, 0
  for i = 0, n - 1 do
    local v = tonumber(redis.call('GET', key(i)))
    if v then
      sum = sum + v
      found = found + 1
      if v ~= initial then
        changed = changed + 1
      end
    end
  end
  return { sum, found, changed }
end

redis.register_function('transfer', transfer)
redis.register_function('open_accounts', open_accounts)
redis.register_function {
  function_name = 'total',
  callback = total,
  flags = { 'no-writes' },
}
