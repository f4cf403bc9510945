package gateway

import (
	"strings"
	"testing"
)

// TestHidePassword: the password of either DSN form is replaced; a message
// without it, or a DSN without one, leaves the message alone.
func TestHidePassword(t *testing.T) {
	t.Parallel()
	for _, dsn := range []string{"postgres://u:s3cret-pw@127.0.0.1/db", "host=127.0.0.1 user=u password=s3cret-pw"} {
		out, ok := HidePassword("dial: s3cret-pw refused", dsn)
		if !ok || strings.Contains(out, "s3cret-pw") || out != "dial: xxxxx refused" {
			t.Errorf("%s: got %q, %v", dsn, out, ok)
		}
	}
	for _, c := range []struct{ msg, dsn string }{
		{"plain", "postgres://u:pw@h/db"},
		{"pw", "postgres://u@h/db"},
		{"pw", "::not a dsn::"},
	} {
		if out, ok := HidePassword(c.msg, c.dsn); ok || out != c.msg {
			t.Errorf("%q with %q: got %q, %v", c.msg, c.dsn, out, ok)
		}
	}
}
