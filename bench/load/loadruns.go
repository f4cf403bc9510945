// The load phase: A, A-app, B, C and D measured interleaved with wrk.

package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/armgate/armgate/internal/promtext"
)

// measure runs wrk once against s and reads the CPU the processes used;
// with perfOut set, perf records Caddy's stacks into that file meanwhile.
func (b *bench) measure(s *server, d time.Duration, perfOut string) (sample, error) {
	ticks := func() (caddy, extra, up, pg int64, err error) {
		if caddy, err = cpuTicks(s.proc.pid()); err != nil {
			return
		}
		if s.extra != nil {
			if extra, err = cpuTicks(s.extra.pid()); err != nil {
				return
			}
		}
		if up, err = cpuTicks(b.upstream.pid()); err != nil {
			return
		}
		pg = childrenTicks(b.postPID)
		return
	}
	c0, e0, u0, g0, err := ticks()
	if err != nil {
		return sample{}, err
	}
	m0, err := scrape(s.mport)
	if err != nil {
		return sample{}, err
	}
	busy0, total0 := machineTicks()
	stopPerf := b.perfRecord(s, d, perfOut)
	w, err := runWrk(s.url(), b.script, b.s.conns, d)
	stopPerf()
	if err != nil {
		return sample{}, err
	}
	busy1, total1 := machineTicks()
	c1, e1, u1, g1, err := ticks()
	if err != nil {
		return sample{}, err
	}
	perReq := func(t int64) float64 { return float64(t) / clkTck / float64(w.Requests) * 1e6 }
	sm := sample{
		rps: w.RPS, p50: ms(w.P50), p99: ms(w.P99),
		cpu: perReq(c1 - c0), upstream: perReq(u1 - u0),
		loadgen: w.CPU.Seconds() / float64(w.Requests) * 1e6,
		bad:     w.Non2xx + w.Errors,
	}
	m1, err := scrape(s.mport)
	if err != nil {
		return sample{}, err
	}
	sm.queries = (m1.Value(lookupsMetric) - m0.Value(lookupsMetric)) / float64(w.Requests)
	sm.gcPer1k = (m1.Value(gcMetric) - m0.Value(gcMetric)) / float64(w.Requests) * 1000
	sm.heapMB = m1.Value(heapMetric) / (1 << 20)
	switch {
	case s.extra != nil:
		sm.extra = perReq(e1 - e0)
	case s.pg:
		sm.extra = perReq(g1 - g0)
	}
	ours := float64(c1-c0+e1-e0+u1-u0+g1-g0) + w.CPU.Seconds()*clkTck
	if dt := float64(total1 - total0); dt > 0 {
		sm.foreign = max(0, (float64(busy1-busy0)-ours)/(dt/float64(runtime.NumCPU())))
	}
	return sm, nil
}

// perfRecord samples the stacks of s's Caddy with perf (cpu-clock, 2000 Hz)
// into out for d, unless out is empty.
func (b *bench) perfRecord(s *server, d time.Duration, out string) (stop func()) {
	if out == "" {
		return func() {}
	}
	cmd := exec.Command("perf", "record", "-q", "-e", "cpu-clock", "-F", "2000", "-g", "-o", out,
		"-p", strconv.Itoa(s.proc.pid()), "--", "sleep", strconv.Itoa(int(d.Seconds())))
	if err := cmd.Start(); err != nil {
		b.logf("perf: %v", err)
		return func() {}
	}
	return func() { _ = cmd.Wait() }
}

func (b *bench) loadRuns(ctx context.Context, servers []*server) error {
	b.logf("warm-up: %s per configuration", b.s.warm)
	for _, s := range servers {
		if _, err := b.measure(s, b.s.warm, ""); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	// PERF=1: perf records every measured run (not the warm-up) into the
	// work directory as perf-NAME-REP.data (keep it with KEEP=1).
	perf := os.Getenv("PERF") == "1"
	res := map[string][]sample{}
	var names []string
	for _, s := range servers {
		names = append(names, s.name)
	}
	b.logf("%d repetitions of %s, %s each (%s in all)", b.s.reps, strings.Join(names, " "), b.s.dur, time.Duration(b.s.reps*len(servers))*b.s.dur)
	fmt.Printf("          rep cfg    req/s   p50 ms   p99 ms  caddy µs/req  extra µs/req  upstream µs/req  wrk µs/req  other cores  queries/req  GC/1k req\n")
	for rep := range b.s.reps {
		for _, s := range pairOrder(servers, rep) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			perfOut := ""
			if perf {
				perfOut = filepath.Join(b.work, fmt.Sprintf("perf-%s-%d.data", strings.ReplaceAll(s.name, "/", "_"), rep+1))
			}
			sm, err := b.measure(s, b.s.dur, perfOut)
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			res[s.name] = append(res[s.name], sm)
			warn := ""
			if sm.bad > 0 {
				warn = fmt.Sprintf("  WARNING: %d non-2xx responses or socket errors", sm.bad)
			}
			fmt.Printf("%s  %3d  %-5s  %8.0f  %7.2f  %7.2f  %12.1f  %12.1f  %15.1f  %10.1f  %11.2f  %11.3f  %9.2f%s\n",
				time.Now().Format("15:04:05"), rep+1, s.name, sm.rps, sm.p50, sm.p99, sm.cpu, sm.extra, sm.upstream, sm.loadgen, sm.foreign, sm.queries, sm.gcPer1k, warn)
		}
	}
	b.summarizeLoad(names, res)
	return nil
}

// splitPairs are the one-process pairs that are not e/e0 but split
// S-quota's: what each measures.
var splitPairs = map[string]string{
	"H":     "three response headers as long as the check's, set by Caddy's `header` handler, and no check (what the headers cost)",
	"F":     "the floor: SHA-256 of the token, one map lookup, one atomic add and the three headers, nothing else checked (the least any check with these headers costs)",
	"S-hdr": "the check against a plain site that sets the same three headers with `header` (the check without its headers' cost)",
}

// pairOrder returns servers in the order of repetition rep: a site and the
// same process's plain site (which comes right before it) swap places in
// every other repetition, so that neither side always runs first.
func pairOrder(servers []*server, rep int) []*server {
	out := append([]*server(nil), servers...)
	if rep%2 == 0 {
		return out
	}
	for i := 0; i+1 < len(out); i++ {
		if out[i+1].plain == out[i] {
			out[i], out[i+1] = out[i+1], out[i]
			i++
		}
	}
	return out
}

func pluck(ss []sample, f func(sample) float64) []float64 {
	out := make([]float64, len(ss))
	for i, s := range ss {
		out[i] = f(s)
	}
	return out
}

func (b *bench) summarizeLoad(names []string, res map[string][]sample) {
	rps := func(s sample) float64 { return s.rps }
	cpu := func(s sample) float64 { return s.cpu }
	desc := configDesc
	var bad int64
	var all []sample
	for _, n := range names {
		for _, s := range res[n] {
			bad += s.bad
		}
		all = append(all, res[n]...)
	}
	fmt.Fprintf(&b.out, "### Load: interleaved %s × %d (medians, [interquartile range] across repetitions)\n", strings.Join(names, " "), b.s.reps)
	fmt.Fprintln(&b.out)
	fmt.Fprintf(&b.out, "| configuration | req/s | p50 ms | p99 ms | Caddy CPU µs/req | + auth service / PostgreSQL µs/req | req/s ÷ A | Caddy CPU ÷ A | DB queries/req | Caddy GC cycles per 1000 req | Caddy heap MB |\n")
	fmt.Fprintf(&b.out, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	a := res["A"]
	for _, n := range names {
		ss := res[n]
		base, copyN, _ := strings.Cut(n, "#")
		base, plain := strings.CutSuffix(base, "/plain")
		label := desc[base]
		if label == "" {
			label = base
		}
		if plain {
			label = base + "/plain: the same process's site without the check"
		}
		if copyN != "" {
			label += " (process " + copyN + ")"
		}
		extra := "–"
		switch base {
		case "C":
			extra = spread(pluck(ss, func(s sample) float64 { return s.extra }), "%.0f") + " (PostgreSQL)"
		case "D":
			extra = spread(pluck(ss, func(s sample) float64 { return s.extra }), "%.1f") + " (auth service)"
		}
		fmt.Fprintf(&b.out, "| %s | %s | %.2f | %.2f | %s | %s | %s | %s | %.3f | %.2f | %.0f |\n", label,
			spread(pluck(ss, rps), "%.0f"),
			median(pluck(ss, func(s sample) float64 { return s.p50 })),
			median(pluck(ss, func(s sample) float64 { return s.p99 })),
			spread(pluck(ss, cpu), "%.1f"), extra,
			spread(ratios(pluck(ss, rps), pluck(a, rps)), "%.3f"),
			spread(ratios(pluck(ss, cpu), pluck(a, cpu)), "%.3f"),
			median(pluck(ss, func(s sample) float64 { return s.queries })),
			median(pluck(ss, func(s sample) float64 { return s.gcPer1k })),
			median(pluck(ss, func(s sample) float64 { return s.heapMB })))
	}
	fmt.Fprintln(&b.out)
	fmt.Fprintf(&b.out, "Ratios are medians of the per-repetition ratios (each run against the A run just before it). Upstream CPU per request (same for all): %.1f µs; wrk's own CPU: %.1f µs/req; other work on the machine during the runs: %s cores (median [IQR]).\n",
		median(pluck(a, func(s sample) float64 { return s.upstream })),
		median(pluck(a, func(s sample) float64 { return s.loadgen })),
		spread(pluck(all, func(s sample) float64 { return s.foreign }), "%.2f"))
	if bad > 0 {
		fmt.Fprintf(&b.out, "WARNING: %d non-2xx responses or socket errors during the runs.\n", bad)
	}
	fmt.Fprintln(&b.out)

	// e/e0 within one process: each site with the check against the same
	// process's plain site, paired repetition by repetition.
	for _, n := range names {
		if e0 := res[n+"/plain"]; e0 != nil {
			rs := ratios(pluck(res[n], cpu), pluck(e0, cpu))
			if what, ok := splitPairs[n]; ok {
				fmt.Fprintf(&b.out, "- %s, one process: %s: Caddy CPU per request %s (median [IQR] of %d pairs; a split of S-quota's e/e0, not e/e0).\n",
					n, what, spread(rs, "%.3f"), len(rs))
				continue
			}
			fmt.Fprintf(&b.out, "- %s, one process: the site with the check against the same process's site without it: Caddy CPU per request %s (e/e0, median [IQR] of %d pairs; target ≤ 1.02: %s), throughput %.3f×.\n",
				n, spread(rs, "%.3f"), len(rs), verdict(median(rs) <= 1.02), median(ratios(pluck(res[n], rps), pluck(e0, rps))))
		}
	}

	// Verdicts.
	if res["B"] == nil || res["D"] == nil {
		return
	}
	cpuBA := median(ratios(pluck(res["B"], cpu), pluck(a, cpu)))
	rpsBA := median(ratios(pluck(res["B"], rps), pluck(a, rps)))
	aRPS := pluck(a, rps)
	noise := (quantile(aRPS, 0.75) - quantile(aRPS, 0.25)) / median(aRPS)
	rpsBD := median(ratios(pluck(res["B"], rps), pluck(res["D"], rps)))
	cpuDA := median(ratios(pluck(res["D"], cpu), pluck(a, cpu)))
	cpuDAall := median(ratios(pluck(res["D"], func(s sample) float64 { return s.cpu + s.extra }), pluck(a, cpu)))
	rpsDA := median(ratios(pluck(res["D"], rps), pluck(a, rps)))
	fmt.Fprintf(&b.out, "- B's Caddy CPU per request is %+.1f %% of A's (target ≤ +3 %%): %s.\n", 100*(cpuBA-1), verdict(cpuBA <= 1.03))
	fmt.Fprintf(&b.out, "- B's throughput is %.3f× A's; A's own run-to-run spread (IQR/median) is %.1f %% (target: within the noise): %s.\n",
		rpsBA, 100*noise, verdict(abs(rpsBA-1) <= max(noise, 0.01)))
	fmt.Fprintf(&b.out, "- B's throughput is %.2f× D's (target ≥ 1.8×): %s.\n", rpsBD, verdict(rpsBD >= 1.8))
	fmt.Fprintf(&b.out, "- D reaches %.2f× A's throughput at %.2f× A's Caddy CPU per request (%.2f× counting the auth service).\n", rpsDA, cpuDA, cpuDAall)
	if e0 := res["A-app"]; e0 != nil {
		// e/e0: the check's Caddy CPU per request over the same process
		// without it, paired repetition by repetition.
		for _, n := range []string{"B", "B-quota"} {
			if e := res[n]; e != nil {
				r := median(ratios(pluck(e, cpu), pluck(e0, cpu)))
				fmt.Fprintf(&b.out, "- Against A-app (same process, armgate app loaded, no check), %s's Caddy CPU per request is %.3f× (e/e0, target ≤ 1.02: %s) and its throughput %.3f×.\n",
					n, r, verdict(r <= 1.02), median(ratios(pluck(e, rps), pluck(e0, rps))))
			}
		}
	}
	fmt.Fprintln(&b.out)
}

// coreSplit formats the median cores used by Caddy, PostgreSQL, the two
// load generators and everything else.
func coreSplit(c [5][]float64) string {
	return fmt.Sprintf("%.2f / %.2f / %.2f / %.2f", median(c[0]), median(c[1]), median(c[2])+median(c[3]), median(c[4]))
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// scrape reads the series of a Caddy metrics endpoint.
func scrape(mport int) (promtext.Samples, error) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", mport))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return promtext.Parse(resp.Body)
}

const (
	lookupsMetric = "caddy_armgate_db_lookups_total"
	gcMetric      = "go_gc_duration_seconds_count"
	heapMetric    = "go_memstats_heap_inuse_bytes"
)
