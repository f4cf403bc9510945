package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/armgate/armgate/token"
)

// maxInFlight bounds each open-loop generator; requests beyond it are
// counted as skipped instead of piling up goroutines.
const maxInFlight = 4096

// openLoop calls fn rps times a second for d, each call in its own goroutine
// at its scheduled time (or at once when behind), whatever the previous
// calls are doing: latency measured from the scheduled time has no
// coordinated omission.
func openLoop(ctx context.Context, rps int, d time.Duration, fn func(i int, scheduled time.Time)) (skipped int64) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxInFlight)
	start := time.Now()
	interval := time.Second / time.Duration(rps)
	n := int(d / interval)
	for i := range n {
		at := start.Add(time.Duration(i) * interval)
		if w := time.Until(at); w > 0 {
			time.Sleep(w)
		}
		if ctx.Err() != nil {
			break
		}
		select {
		case sem <- struct{}{}:
		default:
			skipped++
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			fn(i, at)
		})
	}
	wg.Wait()
	return skipped
}

// validLoad sends valid-token requests from 127.0.0.1 at a fixed rate and
// records their latencies.
type validLoad struct {
	client *http.Client
	url    string
	auth   string

	mu        sync.Mutex
	latencies []time.Duration
	bad       atomic.Int64
}

func newValidLoad(url, auth string) *validLoad {
	return &validLoad{
		url:  url,
		auth: auth,
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			DialContext:         (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}).DialContext,
			MaxIdleConnsPerHost: 512,
			DisableCompression:  true,
		}},
	}
}

func (v *validLoad) run(ctx context.Context, rps int, d time.Duration) (skipped int64) {
	v.mu.Lock()
	v.latencies = v.latencies[:0]
	v.mu.Unlock()
	v.bad.Store(0)
	return openLoop(ctx, rps, d, func(_ int, at time.Time) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, v.url, nil)
		req.Header.Set("Authorization", v.auth)
		resp, err := v.client.Do(req)
		if err != nil {
			v.bad.Add(1)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		lat := time.Since(at)
		if resp.StatusCode != http.StatusOK {
			v.bad.Add(1)
			return
		}
		v.mu.Lock()
		v.latencies = append(v.latencies, lat)
		v.mu.Unlock()
	})
}

// quantiles returns p50 and p99 of the recorded latencies.
func (v *validLoad) quantiles() (p50, p99 time.Duration, n int) {
	v.mu.Lock()
	l := slices.Clone(v.latencies)
	v.mu.Unlock()
	if len(l) == 0 {
		return 0, 0, 0
	}
	slices.Sort(l)
	q := func(p float64) time.Duration { return l[min(len(l)-1, int(p*float64(len(l))))] }
	return q(0.50), q(0.99), len(l)
}

// flood sends well-formed random tokens (valid checksum, unknown) from
// many loopback addresses 127.<net>.x.y, one keep-alive transport each.
type flood struct {
	url        string
	transports []*http.Transport
	clients    []*http.Client

	unauthorized, limited, unavailable, other, errs atomic.Int64
}

func newFlood(url string, subnet byte, addrs int) *flood {
	f := &flood{url: url}
	for i := range addrs {
		ip := net.IPv4(127, subnet, byte(i/250), byte(i%250+1))
		tr := &http.Transport{
			DialContext:         (&net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}}).DialContext,
			MaxIdleConnsPerHost: 4,
			DisableCompression:  true,
		}
		f.transports = append(f.transports, tr)
		f.clients = append(f.clients, &http.Client{Timeout: 10 * time.Second, Transport: tr})
	}
	return f
}

func (f *flood) close() {
	for _, tr := range f.transports {
		tr.CloseIdleConnections()
	}
}

func (f *flood) run(ctx context.Context, rps int, d time.Duration) (skipped int64) {
	return openLoop(ctx, rps, d, func(i int, _ time.Time) {
		tok, err := token.Generate()
		if err != nil {
			panic(err)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.url, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := f.clients[i%len(f.clients)].Do(req)
		if err != nil {
			f.errs.Add(1)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			f.unauthorized.Add(1)
		case http.StatusTooManyRequests:
			f.limited.Add(1)
		case http.StatusServiceUnavailable:
			f.unavailable.Add(1)
		default:
			f.other.Add(1)
		}
	})
}

// floodCounts is what a flood process reports on its last line of output.
type floodCounts struct {
	Unauthorized, Limited, Unavailable, Other, Errors, Skipped int64
}

func (c floodCounts) String() string {
	return fmt.Sprintf("401 %d, 429 %d, 503 %d, other %d, errors %d, skipped %d",
		c.Unauthorized, c.Limited, c.Unavailable, c.Other, c.Errors, c.Skipped)
}

// runFlood is the flood generator, a process of its own so that its work
// does not delay the valid-token client's goroutines.
func runFlood(args []string) error {
	fs := flag.NewFlagSet("flood", flag.ExitOnError)
	url := fs.String("url", "", "target URL")
	subnet := fs.Int("subnet", 10, "client addresses are 127.<subnet>.x.y")
	addrs := fs.Int("addrs", 64, "number of client addresses")
	rps := fs.Int("rps", 2000, "requests per second")
	dur := fs.Duration("dur", 8*time.Second, "duration")
	_ = fs.Parse(args)
	f := newFlood(*url, byte(*subnet), *addrs)
	skipped := f.run(context.Background(), *rps, *dur)
	f.close()
	return json.NewEncoder(os.Stdout).Encode(floodCounts{
		Unauthorized: f.unauthorized.Load(), Limited: f.limited.Load(), Unavailable: f.unavailable.Load(),
		Other: f.other.Load(), Errors: f.errs.Load(), Skipped: skipped,
	})
}
