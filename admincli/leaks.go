package admincli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/armgate/armgate/adminapi"
	"github.com/armgate/armgate/leaks"
	"github.com/armgate/armgate/storage"
)

// maxLeakInput bounds what token revoke-leaked reads from its input.
const maxLeakInput = 64 << 20

// TokenRevokeLeaked revokes as leaked (actor leak:admin, the audit detail
// naming "cli" as who reported) every token read from in: whitespace-
// separated, so one per line or several; never from the command line,
// where ps and the shell history would see them. url says where they were
// found. It prints one line per token (hint, result, token id), in input
// order, or with JSON the admin API's answer; strings that are not armgate
// tokens show no hint, since they may be other secrets.
func (r *Runner) TokenRevokeLeaked(ctx context.Context, in io.Reader, url string) error {
	if in == nil {
		return Usagef("the tokens are read from standard input")
	}
	var tokens []string
	sc := bufio.NewScanner(io.LimitReader(in, maxLeakInput))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	sc.Split(bufio.ScanWords)
	for sc.Scan() {
		tokens = append(tokens, sc.Text())
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading the tokens: %w", err)
	}
	if len(tokens) == 0 {
		return Usagef("no tokens on standard input (one per line: caddy armgate token revoke-leaked --config FILE < found.txt)")
	}
	all := adminapi.RevokedLeaks{Results: []adminapi.LeakResult{}}
	// A report of at most leaks.MaxTokens tokens is one transaction; more
	// are revoked in batches of that size.
	for start := 0; start < len(tokens); start += leaks.MaxTokens {
		batch := tokens[start:min(start+leaks.MaxTokens, len(tokens))]
		items, err := adminapi.RevokeLeakedRequest{Tokens: batch, URL: url}.Items()
		if err != nil {
			return usage(err)
		}
		var ls []storage.Leak
		for _, it := range items {
			if it.Valid {
				ls = append(ls, storage.Leak{Hash: it.Hash, URL: it.URL, ReportedBy: Actor})
			}
		}
		out, _, err := r.Store.RevokeLeaked(ctx, storage.ActorLeakAdmin, ls)
		if err != nil {
			return fmt.Errorf("revoking leaked tokens: %w", err)
		}
		res := adminapi.LeakResults(items, out)
		all.Results = append(all.Results, res.Results...)
		all.Revoked += res.Revoked
	}
	if r.JSON {
		return r.printJSON(all)
	}
	t := newTable(r.Out, "HINT", "RESULT", "TOKEN ID")
	for _, res := range all.Results {
		hint := res.Hint
		if hint == "" {
			hint = "(not an armgate token)"
		}
		t.row(hint, strings.ReplaceAll(res.Result, "_", " "), str(res.TokenID))
	}
	return t.flush()
}
