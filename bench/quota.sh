#!/usr/bin/env bash
# quota.sh — two gateway instances behind one token driven at 10× its quota, at a fixed offered
# rate R and then 10R (open-loop, rate-controlled): the achieved rate, requests admitted beyond
# the quota (against the README's bound) and PostgreSQL transactions per second (must stay flat
# as the rate grows). Loopback only, about a minute. Results: docs/performance.md, "Quotas
# across instances". It runs BenchmarkQuotaSync in bench/instances, without -race; PostgreSQL is
# a throwaway one (internal/testpg), or $ARMGATE_TEST_DATABASE_URL's server when set.
#
#   bash bench/quota.sh                                        R = 40 requests/s, 10 s per rate
#   ARMGATE_QUOTA_RATE=100 ARMGATE_QUOTA_SECS=20 bash bench/quota.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec go test -count=1 -v -run '^$' -bench '^BenchmarkQuotaSync$' -benchtime 1x ./bench/instances
