#!/bin/bash
# What the second proxy worker buys: same-node saturation through weft (HAProxy serving 1 KiB
# in the server pod, wrk in the client pod), 1 vs 2 workers, interleaved, 3 rounds. Root; ~2 min.
# Usage: sudo bash bench/workers.sh
set -u
W="$(cd "$(dirname "$0")/.." && pwd)/bin/weft"
cat > /tmp/wk-haproxy.cfg <<'CFG'
global
  maxconn 4000
defaults
  mode http
  timeout client 30s
  timeout server 30s
  timeout connect 5s
frontend f
  bind 0.0.0.0:8090
  http-request return status 200 content-type text/plain file /tmp/wk-1k.txt
CFG
head -c 1024 /dev/zero | tr '\0' 'x' > /tmp/wk-1k.txt
for n in 1 2; do
  $W sim up --name wk$n --nodes 1 --pods-per-node 2 --agent-args "--workers $n" >/dev/null 2>&1 || { echo "up wk$n failed"; exit 1; }
  $W sim exec --name wk$n hello-1-1 -- haproxy -f /tmp/wk-haproxy.cfg -D -p /tmp/wk$n-haproxy.pid
done
for rep in 1 2 3; do
  for n in 1 2; do
    r=$($W sim exec --name wk$n echo-1-0 -- wrk -t2 -c64 -d8s http://198.18.1.11:8090/ 2>&1 | awk '/Requests\/sec/ {print $2}')
    d=$($W sim exec --name wk$n echo-1-0 -- wrk -t2 -c64 -d8s -H 'Connection: close' http://198.18.1.11:8090/ 2>&1 | awk '/Requests\/sec/ {print $2}')
    echo "rep=$rep workers=$n keepalive_rps=$r newconn_rps=$d"
  done
done
for n in 1 2; do kill "$(cat /tmp/wk$n-haproxy.pid)" 2>/dev/null; $W sim down --name wk$n >/dev/null; done
