#!/bin/sh
# Compose profile `cluster`: joins redis-node-1..6 into a Redis Cluster of 3 masters with one
# replica each. A no-op when the nodes already form a cluster (re-running `up` is safe).
set -eu
nodes=""
for i in 1 2 3 4 5 6; do
  # redis-cli --cluster create wants addresses, not names.
  ip=$(getent hosts "redis-node-$i" | cut -d' ' -f1)
  nodes="$nodes $ip:6379"
done
if redis-cli -h redis-node-1 cluster info | grep -q '^cluster_state:ok'; then
  echo "cluster-init: already a cluster"
  exit 0
fi
# shellcheck disable=SC2086  # nodes is a list of addresses
redis-cli --cluster create $nodes --cluster-replicas 1 --cluster-yes
until redis-cli -h redis-node-1 cluster info | grep -q '^cluster_state:ok'; do sleep 0.5; done
echo "cluster-init: cluster ok"
