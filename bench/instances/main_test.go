package instances

import (
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/armgate/armgate/internal/gatewayproc"
	"github.com/armgate/armgate/internal/testpg"
)

func TestMain(m *testing.M) { testpg.Main(m) }

// startInstances starts n Caddy processes (built without -race) on one
// fresh database with the armgate options app, and returns them with the
// database's DSN.
func startInstances(b *testing.B, n int, app string) ([]*gatewayproc.Proc, string) {
	b.Helper()
	bin, err := gatewayproc.Binary(false)
	if err != nil {
		b.Fatal(err)
	}
	dsn := testpg.NewDatabase(b)
	cfg := gatewayproc.Config{DSN: dsn, ExtraApp: app}
	procs := make([]*gatewayproc.Proc, n)
	for i := range procs {
		procs[i] = gatewayproc.Start(b, bin, string(rune('A'+i)), cfg)
	}
	return procs, dsn
}

// envInt reads a positive integer setting, def when unset.
func envInt(b *testing.B, name string, def int) int {
	b.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

// quantile returns the q-quantile of ds by the nearest-rank method.
func quantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// summary formats min, median, p95, p99 and max of ds.
func summary(ds []time.Duration) string {
	r := func(q float64) time.Duration { return quantile(ds, q).Round(10 * time.Microsecond) }
	return fmt.Sprintf("min %v  median %v  p95 %v  p99 %v  max %v", r(0), r(0.5), r(0.95), r(0.99), r(1))
}

// ms is d in milliseconds, for ReportMetric.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
