// The Go benchmarks phase: the hot path and the cache's memory per entry.

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

// goBenchmarks runs the hot-path and memory benchmarks and summarizes
// them (medians over -count runs).
func (b *bench) goBenchmarks(ctx context.Context) error {
	b.logf("Go benchmarks (hot path × %d, memory at 1M entries)", b.s.goBenchCount)
	run := func(args ...string) (map[string]map[string][]float64, []string, error) {
		cmd := exec.CommandContext(ctx, "go", append([]string{"test", "-run", "^$", "-benchmem"}, args...)...)
		cmd.Env = append(os.Environ(), "ARMGATE_TEST_DATABASE_URL="+b.dsn)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return nil, nil, fmt.Errorf("go test %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		res := map[string]map[string][]float64{}
		var order []string
		for line := range strings.Lines(string(out)) {
			m := benchLine.FindStringSubmatch(strings.TrimSpace(line))
			if m == nil {
				continue
			}
			if res[m[1]] == nil {
				res[m[1]] = map[string][]float64{}
				order = append(order, m[1])
			}
			f := strings.Fields(m[2])
			for i := 0; i+1 < len(f); i += 2 {
				if v, err := strconv.ParseFloat(f[i], 64); err == nil {
					res[m[1]][f[i+1]] = append(res[m[1]][f[i+1]], v)
				}
			}
		}
		return res, order, nil
	}
	hot, order, err := run("-bench", "^Benchmark(AuthCheckHit|AuthServeHTTPHit|AuthServeHTTPHitOthersBlocked|AuthServeHTTPNegativeHit|AuthServeHTTPLimited|AuthMissPostgres|VerifyHit|VerifyNegativeHit)$",
		"-count", strconv.Itoa(b.s.goBenchCount), "./caddymodule", "./verifier")
	if err != nil {
		return err
	}
	mem, _, err := run("-bench", "^BenchmarkCacheMemory$", "-benchtime", "1x", "./verifier")
	if err != nil {
		return err
	}
	fmt.Fprintf(&b.out, "### Hot path (go test -bench, median of %d)\n", b.s.goBenchCount)
	fmt.Fprintln(&b.out)
	fmt.Fprintf(&b.out, "| benchmark | ns/op | B/op | allocs/op |\n")
	fmt.Fprintf(&b.out, "| --- | --- | --- | --- |\n")
	for _, name := range order {
		m := hot[name]
		fmt.Fprintf(&b.out, "| %s | %.0f | %.0f | %.0f |\n", strings.TrimPrefix(name, "Benchmark"), median(m["ns/op"]), median(m["B/op"]), median(m["allocs/op"]))
	}
	if m := hot["BenchmarkAuthCheckHit"]; m != nil {
		fmt.Fprintln(&b.out)
		fmt.Fprintf(&b.out, "- Check on a cache hit (parse, checksum, SHA-256, cache): %.0f ns, %.0f allocs (target ≤ 1 µs, ≤ 1 alloc): %s.\n",
			median(m["ns/op"]), median(m["allocs/op"]), verdict(median(m["ns/op"]) <= 1000 && median(m["allocs/op"]) <= 1))
	}
	fmt.Fprintln(&b.out)
	if m := mem["BenchmarkCacheMemory/entries=1000000"]; m != nil {
		fmt.Fprintf(&b.out, "### Memory per cached entry at 1M entries\n")
		fmt.Fprintln(&b.out)
		fmt.Fprintf(&b.out, "- %.0f B per entry in all (target ≤ 300 B): %s. Of that: armgate's entry (struct, credential strings, scopes) %.0f B; ristretto's per-item bookkeeping (store map, policy) %.0f B; fixed structures sized by max_entries (TinyLFU sketch for 10M counters, bloom filter, table of unknown tokens) %.0f B per entry.\n",
			median(m["B/entry"]), verdict(median(m["B/entry"]) <= 300), median(m["entry-B/entry"]),
			median(m["ristretto-item-B/entry"]), median(m["ristretto-fixed-B/entry"]))
		fmt.Fprintln(&b.out)
	}
	return nil
}
