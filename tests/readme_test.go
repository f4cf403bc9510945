package tests

// TestREADMESessions runs README.md's shell sessions as written, in order,
// against Caddyfile.example served by a Caddy process on a fresh database,
// with the variables scripts/run.sh puts in .armgate/env, and checks every
// answer against the comment under its command ("# 201 {...}", "# HTTP/1.1
// 401 Unauthorized" with headers and body): the status, the headers shown and
// every JSON field shown. Ids, timestamps and secrets differ from run to run:
// a value that is a UUID, an RFC 3339 time, "<...>" or holds "…" is checked
// for its type only, as are exp and iat; "..." and "…" between fields or
// elements stand for ones not shown. A comment that starts with "(" is prose.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/armgate/armgate/internal/testpg"
	"github.com/armgate/armgate/internal/wait"
)

// readmeStep is one command of a session and the answer it should get.
type readmeStep struct {
	line   int    // in README.md
	cmd    string // as written, continuation lines joined
	expect string // the comment under it without the "# ", lines joined; "" for none
}

// readmeSessions returns the commands of README.md's ```sh blocks in order.
// Commands that start the gateway or the tests (bash scripts/...) are left
// out: the test is the gateway.
func readmeSessions(t *testing.T, readme []byte) []readmeStep {
	t.Helper()
	var steps []readmeStep
	inSh, inExpect := false, false
	var cont *readmeStep
	sc := bufio.NewScanner(bytes.NewReader(readme))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case !inSh:
			inSh = strings.TrimSpace(line) == "```sh"
			continue
		case strings.TrimSpace(line) == "```":
			inSh, inExpect, cont = false, false, nil
			continue
		}
		if cont != nil { // a continuation of the previous command
			cont.cmd += "\n" + line
			if !continued(line) {
				cont = nil
			}
			continue
		}
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "":
			inExpect = false
		case strings.HasPrefix(trimmed, "#"):
			text := strings.TrimSpace(strings.TrimPrefix(trimmed, "#"))
			if len(steps) == 0 || strings.HasPrefix(text, "(") {
				inExpect = false
				continue
			}
			last := &steps[len(steps)-1]
			if inExpect {
				last.expect += "\n" + text
			} else if last.expect == "" && isAnswer(text) {
				last.expect, inExpect = text, true
			}
		default:
			inExpect = false
			if strings.HasPrefix(trimmed, "bash scripts/") {
				continue
			}
			steps = append(steps, readmeStep{line: n, cmd: line})
			if continued(line) {
				cont = &steps[len(steps)-1]
			}
		}
	}
	return steps
}

// continued reports whether a command goes on on the next line.
func continued(line string) bool {
	l := strings.TrimSpace(line)
	return strings.HasSuffix(l, `\`) || strings.HasSuffix(l, "|") || strings.HasSuffix(l, "&&")
}

var answerRE = regexp.MustCompile(`^(HTTP/1\.1 \d{3}\b|\d{3}\b)`)

func isAnswer(s string) bool { return answerRE.MatchString(s) }

func TestREADMESessions(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("jq"); err != nil {
		t.Skip("jq is not installed (the README's sessions use it)")
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	steps := readmeSessions(t, readme)
	if len(steps) < 20 {
		t.Fatalf("found %d commands in README.md's sessions; the parser is broken", len(steps))
	}

	// The gateway: Caddyfile.example on free ports (the README's 8080 is
	// replaced in the commands), its own database, in a work directory that
	// looks like the checkout after scripts/run.sh: ./caddy, the config and
	// .armgate/env.
	bin := caddyBinary(t)
	dir := t.TempDir()
	port, upstream, admin := freePort(t), freePort(t), freePort(t)
	example, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(example)
	for _, r := range [][2]string{
		{"admin localhost:2019", fmt.Sprintf("admin 127.0.0.1:%d", admin)},
		{"\n:8080 {", fmt.Sprintf("\n:%d {", port)},
		{"127.0.0.1:8081", fmt.Sprintf("127.0.0.1:%d", upstream)},
		{"http://:8081 {", fmt.Sprintf("http://:%d {", upstream)},
	} {
		if !strings.Contains(cfg, r[0]) {
			t.Fatalf("Caddyfile.example has no %q any more; update this test", r[0])
		}
		cfg = strings.ReplaceAll(cfg, r[0], r[1])
	}
	if err := os.WriteFile(filepath.Join(dir, "Caddyfile.example"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bin, filepath.Join(dir, "caddy")); err != nil {
		t.Fatal(err)
	}
	password := "demo-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	hash, err := exec.Command(bin, "hash-password", "--plaintext", password).Output()
	if err != nil {
		t.Fatalf("caddy hash-password: %v", err)
	}
	vars := [][2]string{
		{"ARMGATE_DATABASE_URL", testpg.NewDatabase(t)},
		{"ARMGATE_ADMIN_KEY", testAdminKey},
		{"ARMGATE_DEMO_USER", "alice"},
		{"ARMGATE_DEMO_PASSWORD", password},
		{"ARMGATE_DEMO_HASH", strings.TrimSpace(string(hash))},
	}
	var envFile strings.Builder
	env := append(os.Environ(), "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	for _, v := range vars {
		fmt.Fprintf(&envFile, "export %s='%s'\n", v[0], v[1])
		env = append(env, v[0]+"="+v[1])
	}
	if err := os.Mkdir(filepath.Join(dir, ".armgate"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".armgate", "env"), []byte(envFile.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "caddy.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	caddy := exec.Command(bin, "run", "--config", "Caddyfile.example", "--adapter", "caddyfile")
	caddy.Dir, caddy.Env, caddy.Stdout, caddy.Stderr = dir, env, logf, logf
	if err := caddy.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = caddy.Process.Signal(os.Interrupt)
		_ = caddy.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("caddy log:\n%s", tail(string(b), 60))
		}
	})
	healthz := fmt.Sprintf("http://127.0.0.1:%d/admin/healthz", port)
	wait.For(t, "the gateway's /admin/healthz to answer 200", func() bool {
		r, err := http.Get(healthz)
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == http.StatusOK
	})
	// What scripts/run.sh does once the gateway answers: the demo user.
	put := exec.Command(bin, "armgate", "user", "put", "--config", "Caddyfile.example", "--user", "alice")
	put.Dir, put.Env = dir, env
	if out, err := put.CombinedOutput(); err != nil {
		t.Fatalf("creating the demo user: %v\n%s", err, out)
	}

	// One bash runs every command in order, so variables carry over; curl
	// reports the status on stderr, and markers split the outputs by command.
	var script strings.Builder
	script.WriteString("cd " + shellQuote(dir) + "\n")
	script.WriteString(`curl() { command curl -sS -w '%{stderr}%{http_code}\n' "$@"; }` + "\n")
	local := fmt.Sprintf("localhost:%d", port)
	for i, s := range steps {
		fmt.Fprintf(&script, "printf '\\n@@%d@@\\n'; printf '\\n@@%d@@\\n' >&2\n", i, i)
		script.WriteString(strings.ReplaceAll(s.cmd, "localhost:8080", local) + "\n")
	}
	var stdout, stderr bytes.Buffer
	sh := exec.Command("bash", "--noprofile", "--norc")
	sh.Stdin = strings.NewReader(script.String())
	sh.Stdout, sh.Stderr = &stdout, &stderr
	sh.Env = append(os.Environ(), "HOME="+dir)
	if err := sh.Run(); err != nil {
		t.Fatalf("bash: %v\nstderr:\n%s", err, stderr.String())
	}
	outs, errs := splitMarked(stdout.String()), splitMarked(stderr.String())

	checked := 0
	for i, s := range steps {
		out, errOut := outs[i], errs[i]
		if s.expect == "" {
			if strings.Contains(errOut, "curl: (") || strings.Contains(errOut, "Error") {
				t.Errorf("README.md:%d %s\n  failed: %s", s.line, firstLine(s.cmd), errOut)
			}
			continue
		}
		checked++
		if msg := checkAnswer(s.expect, out, errOut); msg != "" {
			t.Errorf("README.md:%d %s\n  want: %s\n  %s\n  stdout: %s\n  stderr: %s",
				s.line, firstLine(s.cmd), s.expect, msg, strings.TrimSpace(out), strings.TrimSpace(errOut))
		}
	}
	if checked < 15 {
		t.Errorf("only %d answers checked; the README's sessions or the parser changed", checked)
	}
}

// splitMarked splits output at the "@@<n>@@" lines written before each
// command.
func splitMarked(s string) map[int]string {
	parts := map[int]string{}
	re := regexp.MustCompile(`(?m)^@@(\d+)@@$`)
	locs := re.FindAllStringSubmatchIndex(s, -1)
	for k, loc := range locs {
		n, _ := strconv.Atoi(s[loc[2]:loc[3]])
		end := len(s)
		if k+1 < len(locs) {
			end = locs[k+1][0]
		}
		parts[n] = strings.TrimPrefix(s[loc[1]:end], "\n")
	}
	return parts
}

// checkAnswer compares a command's output with the answer written under it;
// it returns what differs, or "".
func checkAnswer(expect, out, errOut string) string {
	var wantStatus int
	var wantHeaders [][2]string
	var wantBody string
	var gotStatus int
	var gotHeaders http.Header
	var gotBody string
	if rest, ok := strings.CutPrefix(expect, "HTTP/1.1 "); ok {
		// curl -i: the status line, headers, then the body.
		wantStatus, _ = strconv.Atoi(rest[:3])
		lines := strings.Split(rest, "\n")[1:]
		for i, l := range lines {
			if strings.HasPrefix(l, "{") {
				wantBody = strings.Join(lines[i:], "\n")
				break
			}
			if k, v, ok := strings.Cut(l, ": "); ok {
				wantHeaders = append(wantHeaders, [2]string{k, v})
			}
		}
		head, body, _ := strings.Cut(strings.ReplaceAll(out, "\r\n", "\n"), "\n\n")
		gotLines := strings.Split(head, "\n")
		if f := strings.Fields(gotLines[0]); len(f) >= 2 {
			gotStatus, _ = strconv.Atoi(f[1])
		}
		gotHeaders = http.Header{}
		for _, l := range gotLines[1:] {
			if k, v, ok := strings.Cut(l, ":"); ok {
				gotHeaders.Add(k, strings.TrimSpace(v))
			}
		}
		gotBody = body
	} else {
		wantStatus, _ = strconv.Atoi(expect[:3])
		wantBody = strings.TrimSpace(expect[3:])
		codes := regexp.MustCompile(`(?m)^\d{3}$`).FindAllString(errOut, -1)
		if len(codes) == 0 {
			return "no HTTP status (is the command a curl?)"
		}
		gotStatus, _ = strconv.Atoi(codes[len(codes)-1])
		gotBody = out
	}
	if gotStatus != wantStatus {
		return fmt.Sprintf("status %d, want %d", gotStatus, wantStatus)
	}
	for _, h := range wantHeaders {
		if got := gotHeaders.Get(h[0]); got != h[1] {
			return fmt.Sprintf("header %s: %q, want %q", h[0], got, h[1])
		}
	}
	if wantBody == "" {
		return ""
	}
	want, err := parseShown(wantBody)
	if err != nil {
		return fmt.Sprintf("the README's answer does not parse: %v", err)
	}
	var got any
	if err := json.Unmarshal([]byte(strings.TrimSpace(gotBody)), &got); err != nil {
		return fmt.Sprintf("the answer is not JSON: %v", err)
	}
	return matchShown("", want, got)
}

// elided marks "..." or "…" in an array of the README's answer.
type elided struct{}

// parseShown parses an answer as the README shows it: JSON with "..." or
// "…" standing for fields or elements left out.
func parseShown(s string) (any, error) {
	p := &shownParser{s: s}
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	p.space()
	if p.i != len(p.s) {
		return nil, fmt.Errorf("extra text at %d: %q", p.i, p.s[p.i:])
	}
	return v, nil
}

type shownParser struct {
	s string
	i int
}

func (p *shownParser) space() {
	for p.i < len(p.s) && unicode.IsSpace(rune(p.s[p.i])) {
		p.i++
	}
}

// ellipsis skips "..." or "…" and reports whether there was one.
func (p *shownParser) ellipsis() bool {
	p.space()
	for _, e := range []string{"...", "…"} {
		if strings.HasPrefix(p.s[p.i:], e) {
			p.i += len(e)
			return true
		}
	}
	return false
}

func (p *shownParser) value() (any, error) {
	p.space()
	if p.i >= len(p.s) {
		return nil, fmt.Errorf("unexpected end")
	}
	switch c := p.s[p.i]; {
	case c == '{':
		p.i++
		obj := map[string]any{}
		for {
			if p.ellipsis() {
				p.space()
				if p.i < len(p.s) && p.s[p.i] == ',' {
					p.i++
				}
				continue
			}
			p.space()
			if p.i < len(p.s) && p.s[p.i] == '}' {
				p.i++
				return obj, nil
			}
			k, err := p.value()
			key, ok := k.(string)
			if err != nil || !ok {
				return nil, fmt.Errorf("key expected at %d", p.i)
			}
			p.space()
			if p.i >= len(p.s) || p.s[p.i] != ':' {
				return nil, fmt.Errorf(": expected at %d", p.i)
			}
			p.i++
			if obj[key], err = p.value(); err != nil {
				return nil, err
			}
			p.space()
			if p.i < len(p.s) && p.s[p.i] == ',' {
				p.i++
			}
		}
	case c == '[':
		p.i++
		var arr []any
		for {
			if p.ellipsis() {
				arr = append(arr, elided{})
			}
			p.space()
			if p.i < len(p.s) && p.s[p.i] == ']' {
				p.i++
				return arr, nil
			}
			if p.i < len(p.s) && p.s[p.i] == ',' {
				p.i++
				continue
			}
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
	case c == '"':
		j := p.i + 1
		for j < len(p.s) && p.s[j] != '"' {
			if p.s[j] == '\\' {
				j++
			}
			j++
		}
		if j >= len(p.s) {
			return nil, fmt.Errorf("unterminated string at %d", p.i)
		}
		var str string
		if err := json.Unmarshal([]byte(p.s[p.i:j+1]), &str); err != nil {
			return nil, err
		}
		p.i = j + 1
		return str, nil
	default:
		j := p.i
		for j < len(p.s) && !strings.ContainsRune(",}] \t\n", rune(p.s[j])) {
			j++
		}
		var v any
		if err := json.Unmarshal([]byte(p.s[p.i:j]), &v); err != nil {
			return nil, fmt.Errorf("at %d: %q: %v", p.i, p.s[p.i:j], err)
		}
		p.i = j
		return v, nil
	}
}

var (
	uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	timeRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$`)
)

// varies reports whether a shown string differs from run to run, so that
// only its type is checked.
func varies(s string) bool {
	return uuidRE.MatchString(s) || timeRE.MatchString(s) || strings.Contains(s, "…") ||
		strings.HasPrefix(s, "<") || strings.HasPrefix(s, "token:") && uuidRE.MatchString(s[len("token:"):])
}

// matchShown reports how got differs from the shown value want, at path.
func matchShown(path string, want, got any) string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: %v, want an object", path, got)
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				return fmt.Sprintf("%s.%s missing", path, k)
			}
			if k == "exp" || k == "iat" {
				if _, ok := gv.(float64); !ok {
					return fmt.Sprintf("%s.%s: %v, want a number", path, k, gv)
				}
				continue
			}
			if msg := matchShown(path+"."+k, wv, gv); msg != "" {
				return msg
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok {
			return fmt.Sprintf("%s: %v, want an array", path, got)
		}
		open := len(w) > 0 && w[len(w)-1] == elided{}
		shown := w
		if open {
			shown = w[:len(w)-1]
		}
		if len(g) < len(shown) || !open && len(g) != len(shown) {
			return fmt.Sprintf("%s: %d elements, want %d", path, len(g), len(shown))
		}
		for i, wv := range shown {
			if msg := matchShown(fmt.Sprintf("%s[%d]", path, i), wv, g[i]); msg != "" {
				return msg
			}
		}
	case string:
		g, ok := got.(string)
		if !ok {
			return fmt.Sprintf("%s: %v, want a string", path, got)
		}
		if !varies(w) && g != w {
			return fmt.Sprintf("%s: %q, want %q", path, g, w)
		}
	default:
		if fmt.Sprint(want) != fmt.Sprint(got) {
			return fmt.Sprintf("%s: %v, want %v", path, got, want)
		}
	}
	return ""
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func firstLine(s string) string { l, _, _ := strings.Cut(s, "\n"); return l }

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
