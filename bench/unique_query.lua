-- wrk script: every request gets its own query string (?n=1, ?n=2, ...) so that no two requests
-- share a cache key; with a response cache on the route, every request is a miss.
-- Headers given with -H still go with every request (wrk.format uses wrk.headers). A request()
-- function costs wrk more than its prebuilt request, but one wrk thread still far outpaces the
-- proxies measured here. Counts are per thread; the harness runs wrk with one thread.

local count = 0
local separator = "?"

function init(args)
  if string.find(wrk.path, "?", 1, true) then
    separator = "&"
  end
end

function request()
  count = count + 1
  return wrk.format(nil, wrk.path .. separator .. "n=" .. count)
end
