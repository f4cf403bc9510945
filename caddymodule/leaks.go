package caddymodule

import (
	"errors"
	"fmt"
	"sync"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/armgate/armgate/adminapi"
	"github.com/armgate/armgate/leaks/ghkeys"
)

// LeaksConfig turns on the leak report endpoints of armgate_admin: GitHub
// secret scanning (POST <admin mount>/leaks/github) and GitLab's token
// revocation API (<admin mount>/leaks/gitlab/v1/...). Without it both
// answer 404; POST /tokens/revoke-leaked (admin) works either way.
type LeaksConfig struct {
	// GitHubKeysURL is where GitHub's secret scanning public keys are
	// fetched (on first use, when a report names an unknown key id, at
	// most once a minute, and hourly). Default
	// https://api.github.com/meta/public_keys/secret_scanning.
	GitHubKeysURL string `json:"github_keys_url,omitempty"`
	// GitHubKeysFile reads the keys document from a file instead, for
	// installations without access to GitHub's API, and tests.
	GitHubKeysFile string `json:"github_keys_file,omitempty"`
	// GitHubOff turns the GitHub receiver off (404).
	GitHubOff bool `json:"github_off,omitempty"`
	// GitLabToken is the pre-shared token GitLab sends with its token
	// revocation calls ({env.*}, {file.*} resolved at provision); at
	// least 32 characters. Without it the GitLab endpoints answer 404.
	GitLabToken string `json:"gitlab_token,omitempty"`
	// GitLabTokenTypes are the token types answered to GitLab's
	// revocable_token_types and accepted by revoke_tokens. Default
	// armgate_api_token.
	GitLabTokenTypes []string `json:"gitlab_token_types,omitempty"`
}

// minGitLabTokenLen is the least length of the GitLab token, as for admin
// keys.
const minGitLabTokenLen = 32

// resolvedLeaks is the leak configuration once provisioned.
type resolvedLeaks struct {
	githubKeys  *ghkeys.KeySource
	gitlabToken string
	gitlabTypes []string
}

// provisionLeaks resolves the leak configuration's placeholders; the
// error never shows the GitLab token.
func (c *LeaksConfig) provision(repl *caddy.Replacer) (resolvedLeaks, error) {
	var r resolvedLeaks
	if c == nil {
		return r, nil
	}
	url := repl.ReplaceAll(c.GitHubKeysURL, "")
	file := repl.ReplaceAll(c.GitHubKeysFile, "")
	switch {
	case c.GitHubOff:
	case file != "":
		r.githubKeys = ghkeys.FileKeys(file)
	case url != "":
		r.githubKeys = ghkeys.URLKeys(url, nil)
	default:
		r.githubKeys = ghkeys.URLKeys(ghkeys.DefaultGitHubKeysURL, nil)
	}
	if c.GitLabToken != "" {
		r.gitlabToken = repl.ReplaceAll(c.GitLabToken, "")
		if n := utf8.RuneCountInString(r.gitlabToken); n < minGitLabTokenLen {
			return r, fmt.Errorf("armgate: leaks gitlab_token is %d characters; at least %d are required (generate one with: openssl rand -base64 33)",
				n, minGitLabTokenLen)
		}
	}
	r.gitlabTypes = c.GitLabTokenTypes
	return r, nil
}

// validate checks the options that exclude each other.
func (c *LeaksConfig) validate() error {
	if c == nil {
		return nil
	}
	n := 0
	for _, set := range []bool{c.GitHubKeysURL != "", c.GitHubKeysFile != "", c.GitHubOff} {
		if set {
			n++
		}
	}
	if n > 1 {
		return errors.New("armgate: leaks: give at most one of github_keys_url, github_keys_file and github off")
	}
	return nil
}

// leakOptions are the admin API's leak options for the app.
func (a *App) leakOptions() adminapi.LeakOptions {
	initLeakMetrics()
	return adminapi.LeakOptions{
		Store:       a.runtime.Store(),
		GitHubKeys:  a.leaks.githubKeys,
		GitLabToken: a.leaks.gitlabToken,
		GitLabTypes: a.leaks.gitlabTypes,
		Tokens: func(source, label string, n int) {
			leakMetrics.tokens.WithLabelValues(source, label).Add(float64(n))
		},
		Report: func(source, result string) {
			leakMetrics.reports.WithLabelValues(source, result).Inc()
		},
	}
}

// leakMetrics count leak reports and the tokens they name, by source
// (github, gitlab, admin) and label or result; never by token or user.
var leakMetrics = struct {
	once    sync.Once
	tokens  *prometheus.CounterVec
	reports *prometheus.CounterVec
}{}

func initLeakMetrics() {
	m := &leakMetrics
	m.once.Do(func() {
		m.tokens = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: metricsSubsystem,
			Name: "leaked_tokens_total",
			Help: "Tokens named by accepted leak reports, by source (github, gitlab, admin) and label (true_positive: an armgate token that exists; false_positive: anything else).",
		}, []string{"source", "label"})
		m.reports = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: metricsSubsystem,
			Name: "leak_reports_total",
			Help: "Leak reports received by GitHub's and GitLab's endpoints, by source and result (accepted, unauthorized, invalid, unavailable).",
		}, []string{"source", "result"})
	})
}

// registerLeakMetrics registers the leak counters with a config's registry.
func registerLeakMetrics(reg *prometheus.Registry) error {
	initLeakMetrics()
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{leakMetrics.tokens, leakMetrics.reports} {
		if err := reg.Register(c); err != nil {
			if _, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); !ok {
				return err
			}
		}
	}
	return nil
}
