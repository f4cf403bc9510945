package promtext

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	const text = `# HELP caddy_armgate_auth_decisions_total Decisions.
# TYPE caddy_armgate_auth_decisions_total counter
caddy_armgate_auth_decisions_total{result="allowed"} 3
caddy_armgate_auth_decisions_total{result="re\"voked"} 1
# TYPE caddy_armgate_listener_connected gauge
caddy_armgate_listener_connected 1
# TYPE caddy_armgate_db_lookup_duration_seconds histogram
caddy_armgate_db_lookup_duration_seconds_bucket{le="0.005"} 2
caddy_armgate_db_lookup_duration_seconds_bucket{le="+Inf"} 4
caddy_armgate_db_lookup_duration_seconds_sum 0.25
caddy_armgate_db_lookup_duration_seconds_count 4
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0.5"} 0.001
go_gc_duration_seconds_sum 0.5
go_gc_duration_seconds_count 12
untyped_thing{b="2",a="1"} 7
`
	m, err := Parse(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		`caddy_armgate_auth_decisions_total{result="allowed"}`:        3,
		`caddy_armgate_auth_decisions_total{result="re\"voked"}`:      1,
		`caddy_armgate_listener_connected`:                            1,
		`caddy_armgate_db_lookup_duration_seconds_bucket{le="0.005"}`: 2,
		`caddy_armgate_db_lookup_duration_seconds_bucket{le="+Inf"}`:  4,
		`caddy_armgate_db_lookup_duration_seconds_sum`:                0.25,
		`caddy_armgate_db_lookup_duration_seconds_count`:              4,
		`go_gc_duration_seconds{quantile="0.5"}`:                      0.001,
		`go_gc_duration_seconds_sum`:                                  0.5,
		`go_gc_duration_seconds_count`:                                12,
		`untyped_thing{a="1",b="2"}`:                                  7,
	}
	for series, v := range want {
		if !m.Has(series) || m.Value(series) != v {
			t.Errorf("%s = %v (present %v), want %v", series, m.Value(series), m.Has(series), v)
		}
	}
	if len(m) != len(want) {
		t.Errorf("%d series, want %d: %v", len(m), len(want), m)
	}
	if m.Has("absent") || m.Value("absent") != 0 {
		t.Error("an absent series is present")
	}
	if _, err := Parse(strings.NewReader("not a metric line at all {\n")); err == nil {
		t.Error("garbage parsed without error")
	}
}
