// Package instances holds armgate's benchmarks across gateway instances:
// Caddy processes built from this checkout on one throwaway PostgreSQL, on
// loopback. They are Go benchmarks and run only with -bench (no -race: the
// race detector slows the clients, not only the gateway):
//
//	go test -run '^$' -bench Propagation -benchtime 250x ./bench/instances
//	bash bench/quota.sh
//
// BenchmarkPropagation: how long a revocation made through one instance
// takes to be refused by another. BenchmarkQuotaSync: two instances behind
// one token at ten times its quota, at a fixed offered rate and at ten times
// that rate; the overshoot and PostgreSQL's transactions per second.
// Results: docs/performance.md.
package instances
