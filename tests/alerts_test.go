package tests

import (
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// alertRules is the shape of a Prometheus rules file.
type alertRules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// exportedMetrics reads the metric names and the result label values that
// caddymodule/metrics.go defines; a histogram also exports _bucket, _sum and
// _count series.
func exportedMetrics(t testing.TB) (names map[string]bool, results []string) {
	t.Helper()
	src, err := os.ReadFile("../caddymodule/metrics.go")
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	ns := regexp.MustCompile(`metricsNamespace, metricsSubsystem = "(\w+)", "(\w+)"`).FindStringSubmatch(s)
	if ns == nil {
		t.Fatal("metrics.go: namespace and subsystem not found")
	}
	prefix := ns[1] + "_" + ns[2] + "_"
	names = map[string]bool{}
	for _, m := range regexp.MustCompile(`(?:Name:\s*|(?:gauge|counter)\()"(\w+)"`).FindAllStringSubmatch(s, -1) {
		names[prefix+m[1]] = true
	}
	for _, m := range regexp.MustCompile(`(?s)NewHistogram\(prometheus\.HistogramOpts\{.*?Name:\s*"(\w+)"`).FindAllStringSubmatch(s, -1) {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			names[prefix+m[1]+suffix] = true
		}
		delete(names, prefix+m[1])
	}
	for _, m := range regexp.MustCompile(`\boutcome\w+:\s*"(\w+)"`).FindAllStringSubmatch(s, -1) {
		results = append(results, m[1])
	}
	if len(names) < 5 || len(results) < 5 {
		t.Fatalf("metrics.go: found only %v and results %v; has its layout changed?", names, results)
	}
	return names, results
}

// TestAlertRules checks docs/alerts.yml: it parses, every rule is complete,
// and every expression names only metrics (and result label values) that
// armgate exports. With promtool installed it also runs `promtool check
// rules`.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../docs/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules alertRules
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true)
	if err := dec.Decode(&rules); err != nil {
		t.Fatalf("docs/alerts.yml: %v", err)
	}
	names, results := exportedMetrics(t)
	metricRef := regexp.MustCompile(`\bcaddy_armgate_\w+`)
	resultMatcher := regexp.MustCompile(`result\s*(=~|!~|=|!=)\s*"([^"]*)"`)
	seen := map[string]bool{}
	count := 0
	for _, g := range rules.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q: no name or no rules", g.Name)
		}
		for _, r := range g.Rules {
			count++
			if r.Alert == "" || seen[r.Alert] {
				t.Errorf("rule with empty or repeated alert name %q", r.Alert)
			}
			seen[r.Alert] = true
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: needs labels.severity, annotations.summary and annotations.description", r.Alert)
			}
			if _, err := time.ParseDuration(r.For); err != nil {
				t.Errorf("%s: for %q: %v", r.Alert, r.For, err)
			}
			refs := metricRef.FindAllString(r.Expr, -1)
			if len(refs) == 0 {
				t.Errorf("%s: the expression names no armgate metric: %s", r.Alert, r.Expr)
			}
			for _, m := range refs {
				if !names[m] {
					t.Errorf("%s: %s is not a metric armgate exports", r.Alert, m)
				}
			}
			for _, m := range resultMatcher.FindAllStringSubmatch(r.Expr, -1) {
				for v := range strings.SplitSeq(m[2], "|") {
					if !slices.Contains(results, v) {
						t.Errorf("%s: result %q is not a value armgate uses (%v)", r.Alert, v, results)
					}
				}
			}
			depth := map[rune]int{}
			for _, c := range r.Expr {
				switch c {
				case '(', '[', '{':
					depth[c]++
				case ')':
					depth['(']--
				case ']':
					depth['[']--
				case '}':
					depth['{']--
				}
			}
			for c, d := range depth {
				if d != 0 {
					t.Errorf("%s: unbalanced %c in %s", r.Alert, c, r.Expr)
				}
			}
		}
	}
	if count == 0 {
		t.Fatal("docs/alerts.yml has no rules")
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool not installed; checked the rules without it")
		return
	}
	if out, err := exec.Command(promtool, "check", "rules", "../docs/alerts.yml").CombinedOutput(); err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}
}
