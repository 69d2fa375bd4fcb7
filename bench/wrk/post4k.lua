-- wrk script for bench/gateway.sh: every request is a POST of a 4 KiB body (to /echo,
-- the path given on wrk's command line).
wrk.method = "POST"
wrk.body = string.rep("0123456789abcdef", 256)
wrk.headers["Content-Type"] = "application/octet-stream"
