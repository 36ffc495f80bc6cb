-- wrk script: every request gets its own query string (?n=1-<run>, ?n=2-<run>, ...) so that no two
-- requests share a cache key; with a response cache on the route, every request is a miss. <run> is
-- the second this wrk started: a warm-up run's queries never come again in the measured run that
-- follows it (runs start at least a second apart), where the cache would answer them.
-- Headers given with -H still go with every request (wrk.format uses wrk.headers). A request()
-- function costs wrk more than its prebuilt request, but one wrk thread still far outpaces the
-- proxies measured here. Counts are per thread; the harness runs wrk with one thread.

local count = 0
local run = os.time()
local separator = "?"

function init(args)
  if string.find(wrk.path, "?", 1, true) then
    separator = "&"
  end
end

function request()
  count = count + 1
  return wrk.format(nil, wrk.path .. separator .. "n=" .. count .. "-" .. run)
end
