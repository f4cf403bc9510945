package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/armgate/armgate/token"
)

// runUpstream is the stand-in API behind every configuration: a tiny JSON
// answer.
func runUpstream(args []string) error {
	fs := flag.NewFlagSet("upstream", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	_ = fs.Parse(args)
	body := []byte(`{"ok":true,"items":[]}` + "\n")
	return http.ListenAndServe(*addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
}

// runAuthService is the external auth service of configuration (D): for
// Caddy's forward_auth it does what armgate_auth does on a cache hit, in
// memory: parse the bearer header, check shape and checksum, SHA-256, map
// lookup. 200 with X-ARM-User-ID, else 401.
func runAuthService(args []string) error {
	fs := flag.NewFlagSet("authsvc", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	tokenFile := fs.String("tokens", "", "file with one `user_id token` pair per line")
	_ = fs.Parse(args)
	data, err := os.ReadFile(*tokenFile)
	if err != nil {
		return err
	}
	users := map[token.Hash]string{}
	for line := range strings.Lines(string(data)) {
		user, tok, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		users[token.Sum(tok)] = user
	}
	if len(users) == 0 {
		return fmt.Errorf("no tokens in %s", *tokenFile)
	}
	return http.ListenAndServe(*addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, res := token.ParseAuthorization(r.Header.Values("Authorization"))
		if res == token.HeaderOK && token.Check(tok) == nil {
			if user, ok := users[token.Sum(tok)]; ok {
				w.Header().Set("X-ARM-User-ID", user)
				w.WriteHeader(http.StatusOK)
				return
			}
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="ARM API", error="invalid_token"`)
		w.WriteHeader(http.StatusUnauthorized)
	}))
}
