"""What WAIT costs on the compose Redis Cluster: latency of SET vs SET + WAIT 1 on one master.

    python deploy/cluster_wait.py [--n 300]     # the `cluster` profile must be up

Finds a master that has a connected replica (through the host's route to the compose network),
then times ``--n`` SETs of a 2 kB value, with and without ``WAIT 1 1000`` (the write is
acknowledged only once one replica has it), in two interleaved rounds; prints the median and
p99 of each. Run on the build host as root (the containers' bridge addresses).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import redis

PROJECT = "segint"


def masters() -> list[redis.Redis]:
    out = []
    for n in range(1, 7):
        ip = subprocess.run(
            [
                "/usr/bin/docker",
                "inspect",
                "-f",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                f"{PROJECT}_redis-node-{n}_1",
            ],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if not ip:
            continue  # not running (e.g. killed by the drill)
        client = redis.Redis(host=ip, port=6379, socket_timeout=5)
        info = client.info("replication")
        if info["role"] == "master" and info["connected_slaves"] >= 1:
            out.append(client)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=300, help="SETs per mode and round")
    args = p.parse_args(argv)
    found = masters()
    if not found:
        sys.stderr.write("cluster_wait: no master with a replica found (is `cluster` up?)\n")
        return 2
    client = found[0]
    key = next(k for k in (f"wait-probe:{{{i}}}" for i in range(100_000)) if _owns(client, k))
    lat: dict[str, list[float]] = {"SET": [], "SET+WAIT 1": []}
    for _ in range(2):
        for mode, samples in lat.items():
            for _ in range(args.n):
                t0 = time.perf_counter()
                client.set(key, b"x" * 2000, ex=60)
                if mode != "SET" and int(client.execute_command("WAIT", 1, 1000)) < 1:
                    raise RuntimeError("WAIT: no replica acknowledged within 1 s")
                samples.append((time.perf_counter() - t0) * 1000)
    client.delete(key)
    for mode, samples in lat.items():
        samples.sort()
        sys.stdout.write(
            f"{mode}: n={len(samples)} median {statistics.median(samples):.2f} ms, "
            f"p99 {samples[int(0.99 * len(samples))]:.2f} ms\n"
        )
    return 0


def _owns(client: redis.Redis, key: str) -> bool:
    try:
        client.set(key, b"", ex=60)
    except redis.ResponseError:  # MOVED: another master serves that slot
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
