#!/usr/bin/env bash
# load.sh — armgate's load benchmark in one command (issue 5).
#
#   bash bench/load.sh            full run: 15 interleaved repetitions of A A-app B B-quota C D, flood,
#                                 hot-path and memory benchmarks, start-up (about 8 minutes)
#   QUICK=1 bash bench/load.sh    short run (about 2.5 minutes)
#
# Loopback only. Installs wrk (Debian package) when missing, then runs `go run ./bench/load`,
# which builds Caddy with armgate, starts a private PostgreSQL (scripts/pg.sh) and everything
# else, and removes it all at the end. Settings (environment): REPS, DURATION, CONNS,
# FLOOD_SECS, FLOOD_RPS, VALID_RPS, FLOOD_ADDRS, FLOOD_ROUNDS, STARTUP_RUNS, GOBENCH=0, KEEP=1, PERF=1;
# see bench/load/main.go.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v wrk >/dev/null 2>&1; then
	echo "load.sh: wrk not found; installing the Debian package" >&2
	sudo=()
	if [[ $EUID -ne 0 ]]; then
		command -v sudo >/dev/null 2>&1 || { echo "load.sh: install wrk (apt-get install wrk) and rerun" >&2; exit 1; }
		sudo=(sudo)
	fi
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >&2 ||
		{ "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 &&
			"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >&2; }
fi
exec go run ./bench/load "$@"
