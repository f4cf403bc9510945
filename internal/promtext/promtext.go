// Package promtext reads the Prometheus text exposition format (what Caddy's /metrics serves)
// into a flat map of series, for tests and benchmarks that compare counters.
package promtext

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Sample is one series of an exposition: a histogram or summary is split into the series the
// text format shows (name_bucket{le=...}, name{quantile=...}, name_sum, name_count).
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Series returns the sample as the text format writes it, without the value:
// name{label="value",...} with the labels sorted by name, or name alone.
func (s Sample) Series() string {
	if len(s.Labels) == 0 {
		return s.Name
	}
	var b strings.Builder
	b.WriteString(s.Name)
	b.WriteByte('{')
	for i, k := range slices.Sorted(maps.Keys(s.Labels)) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(s.Labels[k]))
	}
	b.WriteByte('}')
	return b.String()
}

// Samples maps Sample.Series to the sample.
type Samples map[string]Sample

// Value returns the value of series, 0 when it is absent (Has tells the difference).
func (m Samples) Value(series string) float64 { return m[series].Value }

// Has reports whether series is present.
func (m Samples) Has(series string) bool {
	_, ok := m[series]
	return ok
}

// Parse reads a text exposition.
func Parse(r io.Reader) (Samples, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	out := Samples{}
	add := func(name string, labels map[string]string, v float64) {
		s := Sample{Name: name, Labels: labels, Value: v}
		out[s.Series()] = s
	}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			labels := func(extra ...string) map[string]string {
				l := make(map[string]string, len(m.GetLabel())+1)
				for _, lp := range m.GetLabel() {
					l[lp.GetName()] = lp.GetValue()
				}
				for i := 0; i+1 < len(extra); i += 2 {
					l[extra[i]] = extra[i+1]
				}
				return l
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				add(name, labels(), m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				add(name, labels(), m.GetGauge().GetValue())
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				h := m.GetHistogram()
				for _, b := range h.GetBucket() {
					add(name+"_bucket", labels("le", formatFloat(b.GetUpperBound())), float64(b.GetCumulativeCount()))
				}
				add(name+"_bucket", labels("le", "+Inf"), float64(h.GetSampleCount()))
				add(name+"_sum", labels(), h.GetSampleSum())
				add(name+"_count", labels(), float64(h.GetSampleCount()))
			case dto.MetricType_SUMMARY:
				s := m.GetSummary()
				for _, q := range s.GetQuantile() {
					add(name, labels("quantile", formatFloat(q.GetQuantile())), q.GetValue())
				}
				add(name+"_sum", labels(), s.GetSampleSum())
				add(name+"_count", labels(), float64(s.GetSampleCount()))
			default:
				add(name, labels(), m.GetUntyped().GetValue())
			}
		}
	}
	return out, nil
}

// formatFloat writes a bound as the text format does.
func formatFloat(f float64) string {
	switch {
	case math.IsInf(f, +1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}
