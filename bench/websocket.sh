#!/usr/bin/env bash
# WebSocket clients: natsu's websocket listener against nats-server's, side by side
# (bench/natsgo.sh over ws://; every variable of that script applies).
#
#   bench/websocket.sh                                   # 3 rounds of pubsub16 and pubsub1k
#   ROUNDS=5 WORKLOADS="pubsub16 pubsub1k reqrep16" bench/websocket.sh
exec env TRANSPORT=ws OUT="${OUT:-bench/runs/websocket-$(date +%Y%m%d-%H%M%S)}" "$(dirname "$0")/natsgo.sh" "$@"
