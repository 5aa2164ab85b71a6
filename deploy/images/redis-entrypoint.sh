#!/bin/sh
# As in the upstream redis image: protected mode off (the container network is the boundary;
# with it on, a password-less Redis refuses every client that is not on loopback).
set -e
if [ "$1" = redis-server ]; then
  shift
  exec redis-server "$@" --protected-mode no
fi
exec "$@"
