-- wrk script: POST /echo with a 1 KiB body (keep-alive); wrk adds Content-Length.
wrk.method = "POST"
wrk.body = string.rep("x", 1024)
wrk.headers["Content-Type"] = "application/octet-stream"
