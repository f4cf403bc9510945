#!/usr/bin/env bash
# quota.sh — two gateway instances behind one token driven at 10× its quota, at a total rate R
# and then 10R: requests admitted beyond the quota (against the README's bound) and PostgreSQL
# transactions per second (must stay flat as the rate grows). Loopback only, about a minute.
# Results: docs/performance.md, "Quotas across instances".
#
#   bash bench/quota.sh                        R = 100 requests/s, 10 s per rate
#   ARMGATE_QUOTA_RATE=50 ARMGATE_QUOTA_SECS=20 bash bench/quota.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ARMGATE_BENCH=1 ARMGATE_SKIP_BROWSER=1 ARMGATE_FUZZTIME=0 \
	exec bash scripts/test.sh -count=1 -run TestQuotaOvershootBenchmark -v ./tests
