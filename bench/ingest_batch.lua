-- wrk script: POST batches of PlaceOrder (JSON lines) to
-- /v1/commands:batch. BATCH (environment, default 500) lines per request.
-- BATCH=500 wrk -t2 -c8 -d20s --latency -s bench/ingest_batch.lua http://127.0.0.1:18090
local n = tonumber(os.getenv("BATCH") or "500")
local counter = 0

function setup(thread)
        thread:set("tid", math.random(1, 1000000))
end

function request()
        local lines = {}
        for i = 1, n do
                counter = counter + 1
                lines[i] = string.format(
                        '{"type":"PlaceOrder","activity_id":"bench-a%d",' ..
                        '"user_id":"u%d-%d","qty":1}',
                        counter % 64, tid, counter)
        end
        return wrk.format("POST", "/v1/commands:batch",
                {["Content-Type"] = "application/json"},
                table.concat(lines, "\n"))
end
