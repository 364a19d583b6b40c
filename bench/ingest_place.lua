-- wrk script: POST one PlaceOrder per request to the ingest gateway, a new
-- user_id each time (so the per-user rate limit never applies) and no
-- order_id (the gateway generates it).
-- wrk -t2 -c64 -d20s --latency -s bench/ingest_place.lua http://127.0.0.1:18090
local counter = 0
local threads = {}

function setup(thread)
        thread:set("tid", #threads)
        table.insert(threads, thread)
end

function request()
        counter = counter + 1
        local body = string.format(
                '{"type":"PlaceOrder","activity_id":"bench-a%d",' ..
                '"user_id":"u%d-%d","qty":1}', counter % 64, tid, counter)
        return wrk.format("POST", "/v1/commands",
                {["Content-Type"] = "application/json"}, body)
end
