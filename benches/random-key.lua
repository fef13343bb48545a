-- wrk script: GET /api/files/kNNNNN with NNNNN uniform in [0, KEYS), a fresh pick per request.
-- KEYS comes from the environment (default 10000); each wrk thread seeds its own generator.
local keys = tonumber(os.getenv("KEYS") or "10000")
local counter = 0

function setup(thread)
    counter = counter + 1
    thread:set("id", counter)
end

function init(args)
    math.randomseed(os.time() * 1000 + (id or 0) * 7919)
end

function request()
    return wrk.format("GET", string.format("/api/files/k%05d", math.random(0, keys - 1)))
end
