-- wrk script: POST /api/auth/telegram with pre-signed bodies, each thread cycling
-- through its own slice of the file so that concurrent sign-ins hit distinct rows.
local bodies = {}
local idx = 0

function init(args)
  for line in io.lines(args[1]) do
    bodies[#bodies + 1] = line
  end
  -- Each thread has its own Lua state: seed from a per-state address so the threads
  -- start at different places in the file.
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16) % 100000)
  idx = math.random(#bodies)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  idx = idx % #bodies + 1
  return wrk.format(nil, "/api/auth/telegram", nil, bodies[idx])
end

function done(summary, latency, requests)
  io.write(string.format("p50 %.2f ms, p99 %.2f ms, non-2xx %d\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.errors.status))
end
