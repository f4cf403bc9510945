package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// wrkResult is what one wrk run reports.
type wrkResult struct {
	Requests int64
	Seconds  float64
	RPS      float64
	P50, P99 time.Duration
	Non2xx   int64
	Errors   int64
	// CPU is the CPU time wrk itself used (the load generator shares
	// the machine with the servers).
	CPU time.Duration
}

var (
	reReqs   = regexp.MustCompile(`(\d+) requests in ([\d.]+)(us|ms|s|m)`)
	reRPS    = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	rePct    = regexp.MustCompile(`^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s|m)\s*$`)
	reNon2xx = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	reSockE  = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

// writeWrkScript writes a wrk Lua script that sends the tokens in turn,
// one request each, so that concurrent requests carry different tokens
// (otherwise (C) would collapse its concurrent lookups into one query).
func writeWrkScript(file string, tokens []string) error {
	var b strings.Builder
	b.WriteString("local tokens = {\n")
	for _, t := range tokens {
		fmt.Fprintf(&b, "  %q,\n", t)
	}
	b.WriteString(`}
local reqs, i = {}, 0
init = function(args)
  for k, t in ipairs(tokens) do
    reqs[k] = wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. t })
  end
end
request = function()
  i = i % #reqs + 1
  return reqs[i]
end
`)
	return os.WriteFile(file, []byte(b.String()), 0o600)
}

// runWrk runs wrk against url for d with conns connections on one thread.
func runWrk(url, script string, conns int, d time.Duration) (wrkResult, error) {
	args := []string{"-t1", fmt.Sprintf("-c%d", conns), fmt.Sprintf("-d%ds", int(d.Seconds())), "--latency", "--timeout", "5s",
		"-s", script, url}
	cmd := exec.Command("wrk", args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	r, err := parseWrk(string(out))
	r.CPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return r, err
}

func parseUnit(v, unit string) time.Duration {
	f, _ := strconv.ParseFloat(v, 64)
	switch unit {
	case "us":
		return time.Duration(f * float64(time.Microsecond))
	case "ms":
		return time.Duration(f * float64(time.Millisecond))
	case "m":
		return time.Duration(f * float64(time.Minute))
	default:
		return time.Duration(f * float64(time.Second))
	}
}

func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if m := reReqs.FindStringSubmatch(line); m != nil {
			r.Requests, _ = strconv.ParseInt(m[1], 10, 64)
			r.Seconds = parseUnit(m[2], m[3]).Seconds()
		}
		if m := reRPS.FindStringSubmatch(line); m != nil {
			r.RPS, _ = strconv.ParseFloat(m[1], 64)
		}
		if m := rePct.FindStringSubmatch(line); m != nil {
			d := parseUnit(m[2], m[3])
			if m[1] == "50" {
				r.P50 = d
			} else {
				r.P99 = d
			}
		}
		if m := reNon2xx.FindStringSubmatch(line); m != nil {
			r.Non2xx, _ = strconv.ParseInt(m[1], 10, 64)
		}
		if m := reSockE.FindStringSubmatch(line); m != nil {
			for _, s := range m[1:] {
				n, _ := strconv.ParseInt(s, 10, 64)
				r.Errors += n
			}
		}
	}
	if r.Requests == 0 || r.RPS == 0 || r.P99 == 0 {
		return r, fmt.Errorf("could not parse wrk output:\n%s", out)
	}
	return r, nil
}
