// The flood phase: random well-formed tokens beside valid traffic, with
// and without the failure limiter.

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
)

// floodRuns measures valid-token latency alone and beside a flood of
// random well-formed tokens, with the failure limiter on (B) and off.
func (b *bench) floodRuns(ctx context.Context, limited *server) error {
	off := &server{name: "B-nolimit", file: "B-nolimit.Caddyfile"}
	if err := b.startServer(ctx, off); err != nil {
		return err
	}
	defer off.proc.stop()
	type phase struct {
		srv   *server
		addrs int
	}
	var phases []phase
	phases = append(phases, phase{limited, 0})
	for _, n := range b.s.floodAddrs {
		phases = append(phases, phase{limited, n})
	}
	phases = append(phases, phase{off, 0})
	for _, n := range b.s.floodAddrs {
		phases = append(phases, phase{off, n})
	}

	type result struct {
		p50, p99         []float64
		valid, validBad  int64
		sent, refused    int64
		limited, lookups float64
		unavailable      int64
		// cores: Caddy, PostgreSQL, valid client, flood client, rest of
		// the machine.
		cores [5][]float64
	}
	res := make([]result, len(phases))
	subnet := byte(10)
	b.logf("flood: %d round(s) of %d phases, %s each", b.s.floodRounds, len(phases), b.s.floodDur)
	for round := range b.s.floodRounds {
		for i, ph := range phases {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			m0, err := scrape(ph.srv.mport)
			if err != nil {
				return err
			}
			caddy0, _ := cpuTicks(ph.srv.proc.pid())
			pg0 := childrenTicks(b.postPID)
			self0, _ := cpuTicks(os.Getpid())
			busy0, total0 := machineTicks()
			valid := newValidLoad(ph.srv.url(), b.auth)
			var floodCmd *exec.Cmd
			var floodOut strings.Builder
			if ph.addrs > 0 {
				// Fresh addresses every phase: the limiter remembers
				// the previous ones for its window.
				floodCmd = exec.CommandContext(ctx, b.self, "flood", "-url", ph.srv.url(), "-subnet", strconv.Itoa(int(subnet)),
					"-addrs", strconv.Itoa(ph.addrs), "-rps", strconv.Itoa(b.s.floodRPS), "-dur", b.s.floodDur.String())
				floodCmd.Stdout, floodCmd.Stderr = &floodOut, os.Stderr
				subnet++
				if err := floodCmd.Start(); err != nil {
					return err
				}
			}
			skipped := valid.run(ctx, b.s.validRPS, b.s.floodDur)
			var fc floodCounts
			if floodCmd != nil {
				if err := floodCmd.Wait(); err != nil {
					return fmt.Errorf("flood: %w", err)
				}
				if err := json.Unmarshal([]byte(floodOut.String()), &fc); err != nil {
					return fmt.Errorf("flood output %q: %w", floodOut.String(), err)
				}
			}
			busy1, total1 := machineTicks()
			caddy1, _ := cpuTicks(ph.srv.proc.pid())
			pg1 := childrenTicks(b.postPID)
			self1, _ := cpuTicks(os.Getpid())
			m1, err := scrape(ph.srv.mport)
			if err != nil {
				return err
			}
			p50, p99, n := valid.quantiles()
			// Cores used during the phase, by whom.
			wall := float64(total1-total0) / float64(runtime.NumCPU())
			cores := func(t float64) float64 { return t / wall }
			var floodTicks float64
			if floodCmd != nil {
				floodTicks = (floodCmd.ProcessState.UserTime() + floodCmd.ProcessState.SystemTime()).Seconds() * clkTck
			}
			use := [5]float64{cores(float64(caddy1 - caddy0)), cores(float64(pg1 - pg0)), cores(float64(self1 - self0)), cores(floodTicks), 0}
			use[4] = max(0, cores(float64(busy1-busy0))-use[0]-use[1]-use[2]-use[3])
			r := &res[i]
			r.p50 = append(r.p50, ms(p50))
			r.p99 = append(r.p99, ms(p99))
			r.valid += int64(n)
			r.validBad += valid.bad.Load() + skipped
			r.lookups += m1.Value(lookupsMetric) - m0.Value(lookupsMetric)
			for k := range use {
				r.cores[k] = append(r.cores[k], use[k])
			}
			r.limited += m1.Value(`caddy_armgate_auth_decisions_total{result="rate_limited"}`) - m0.Value(`caddy_armgate_auth_decisions_total{result="rate_limited"}`)
			line := fmt.Sprintf("round %d %-9s flood from %4d addresses: valid p50 %6.2f ms p99 %6.2f ms (%d ok, %d bad); cores: caddy %.2f PostgreSQL %.2f clients %.2f+%.2f other %.2f",
				round+1, ph.srv.name, ph.addrs, ms(p50), ms(p99), n, valid.bad.Load()+skipped, use[0], use[1], use[2], use[3], use[4])
			if floodCmd != nil {
				refused := fc.Unauthorized + fc.Limited
				r.sent += refused + fc.Unavailable + fc.Other + fc.Errors + fc.Skipped
				r.refused += refused
				r.unavailable += fc.Unavailable
				line += fmt.Sprintf("; flood %s; db lookups %.0f", fc, m1.Value(lookupsMetric)-m0.Value(lookupsMetric))
			}
			b.logf("%s", line)
		}
	}

	fmt.Fprintf(&b.out, "### Flood: random well-formed tokens from many client addresses beside %d valid req/s\n", b.s.validRPS)
	fmt.Fprintln(&b.out)
	fmt.Fprintf(&b.out, "Each phase %s, %d round(s); the flood is open-loop at %d req/s, every token new (valid checksum, unknown), client addresses 127.x.y.z with one keep-alive connection each. Valid-token latency is measured from the scheduled send time (open loop, no coordinated omission).\n",
		b.s.floodDur, b.s.floodRounds, b.s.floodRPS)
	fmt.Fprintln(&b.out)
	fmt.Fprintf(&b.out, "| failure limiter | flood addresses | refused (401 + 429) | of which 429 | DB queries | DB queries per refused request | valid p50 ms | valid p99 ms | p99 ÷ no flood | cores: Caddy / PostgreSQL / clients / others |\n")
	fmt.Fprintf(&b.out, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	var baseP99 float64
	worst := 0.0
	for i, ph := range phases {
		r := res[i]
		lim := "on (50/1m)"
		if ph.srv == off {
			lim = "off"
		}
		p99 := median(r.p99)
		if ph.addrs == 0 {
			baseP99 = p99
			fmt.Fprintf(&b.out, "| %s | none | – | – | %.0f | – | %.2f | %.2f | 1 | %s |\n", lim, r.lookups, median(r.p50), p99, coreSplit(r.cores))
			continue
		}
		ratio := p99 / baseP99
		worst = max(worst, ratio)
		per := 0.0
		if r.refused > 0 {
			per = r.lookups / float64(r.refused)
		}
		fmt.Fprintf(&b.out, "| %s | %d | %d | %.0f | %.0f | %.3f | %.2f | %.2f | %.2f | %s |\n", lim, ph.addrs, r.refused, r.limited, r.lookups, per, median(r.p50), p99, ratio, coreSplit(r.cores))
		if r.unavailable > 0 || r.sent != r.refused {
			fmt.Fprintf(&b.out, "|  | (%d of %d flood requests were not refused: 503, errors or skipped by the client) | | | | | | | |\n", r.sent-r.refused, r.sent)
		}
	}
	fmt.Fprintln(&b.out)
	fmt.Fprintf(&b.out, "- Valid-token p99 beside a flood is at most %.2f× the p99 without (target ≤ 2×): %s.\n", worst, verdict(worst <= 2))
	fmt.Fprintln(&b.out)
	return nil
}
