// Settings of the benchmark, read from the environment.

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

type settings struct {
	quick        bool
	reps         int
	dur, warm    time.Duration
	conns        int
	floodDur     time.Duration
	floodRPS     int
	validRPS     int
	floodAddrs   []int
	floodRounds  int
	startupRuns  int
	goBenchCount int
	configs      []string
	phases       map[string]bool
	keep         bool
}

func envInt(name string, def int) int {
	if v := os.Getenv(name); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			fmt.Fprintf(os.Stderr, "load: %s=%q is not a number\n", name, v)
			os.Exit(2)
		}
		return n
	}
	return def
}

func loadSettings() settings {
	quick := os.Getenv("QUICK") == "1"
	pick := func(full, q int) int {
		if quick {
			return q
		}
		return full
	}
	s := settings{
		quick:        quick,
		reps:         envInt("REPS", pick(15, 5)),
		dur:          time.Duration(envInt("DURATION", pick(4, 3))) * time.Second,
		warm:         time.Duration(pick(3, 2)) * time.Second,
		conns:        envInt("CONNS", 32),
		floodDur:     time.Duration(envInt("FLOOD_SECS", pick(8, 4))) * time.Second,
		floodRPS:     envInt("FLOOD_RPS", 2000),
		validRPS:     envInt("VALID_RPS", 500),
		floodRounds:  envInt("FLOOD_ROUNDS", pick(2, 1)),
		startupRuns:  envInt("STARTUP_RUNS", pick(5, 3)),
		goBenchCount: pick(3, 1),
		keep:         os.Getenv("KEEP") == "1",
	}
	configs := os.Getenv("CONFIGS")
	if configs == "" {
		configs = "A,A-app,B,B-quota,C,D"
	}
	for c := range strings.SplitSeq(configs, ",") {
		c = strings.TrimSpace(c)
		base, _, _ := strings.Cut(c, "#")
		if _, err := os.Stat(filepath.Join("bench/caddy", base+".Caddyfile")); err != nil {
			fmt.Fprintf(os.Stderr, "load: CONFIGS: unknown configuration %q\n", c)
			os.Exit(2)
		}
		s.configs = append(s.configs, c)
	}
	if s.configs[0] != "A" {
		fmt.Fprintln(os.Stderr, "load: CONFIGS must start with A, the baseline")
		os.Exit(2)
	}
	phases := os.Getenv("PHASES")
	if phases == "" {
		phases = "gobench,load,flood,startup"
	}
	s.phases = map[string]bool{}
	for p := range strings.SplitSeq(phases, ",") {
		switch p = strings.TrimSpace(p); p {
		case "gobench", "load", "flood", "startup":
			s.phases[p] = true
		default:
			fmt.Fprintf(os.Stderr, "load: PHASES: unknown phase %q\n", p)
			os.Exit(2)
		}
	}
	if os.Getenv("GOBENCH") == "0" {
		delete(s.phases, "gobench")
	}
	addrs := os.Getenv("FLOOD_ADDRS")
	if addrs == "" {
		addrs = "64,4000"
	}
	for a := range strings.SplitSeq(addrs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(a))
		if err != nil || n < 1 || n > 250*250 {
			fmt.Fprintf(os.Stderr, "load: FLOOD_ADDRS: bad count %q\n", a)
			os.Exit(2)
		}
		s.floodAddrs = append(s.floodAddrs, n)
	}
	if s.reps < 1 || s.dur < time.Second || s.conns < 1 || s.floodRPS < 1 || s.validRPS < 1 {
		fmt.Fprintln(os.Stderr, "load: REPS, DURATION, CONNS, FLOOD_RPS and VALID_RPS must be at least 1")
		os.Exit(2)
	}
	return s
}

// configDesc describes the configurations in bench/caddy.
var configDesc = map[string]string{
	"A":       "A plain reverse_proxy",
	"A-app":   "A with the armgate app loaded, no check",
	"A-hdr":   "A-app with a trivial handler setting one response header",
	"B":       "B armgate_auth, cache hit",
	"B-quota": "B with token and user quotas and RateLimit headers",
	"C":       "C armgate_auth, cache off",
	"D":       "D forward_auth, in-memory service",
	"S":       "S armgate_auth, cache hit, in a process that also serves S/plain",
	"S-quota": "S with token and user quotas and RateLimit headers",
	"S-noexp": "S with expires_header off",
	"S-hdr":   "S-quota; its plain site sets three headers of the same length",
	"H":       "H header handler setting the three headers, no check",
	"F":       "F floor: SHA-256, one map lookup, one atomic add and the three headers",
}
