-- wrk script: one request per connection (Connection: close).
wrk.headers["Connection"] = "close"
