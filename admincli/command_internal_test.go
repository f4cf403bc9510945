package admincli

import (
	"errors"
	"strings"
	"testing"
)

// TestCLIHidePassword: should a driver error ever quote the DSN's password,
// the command does not print it, and a usage error stays one.
func TestCLIHidePassword(t *testing.T) {
	for _, dsn := range []string{"postgres://u:s3cret-pw@127.0.0.1/db", "host=127.0.0.1 user=u password=s3cret-pw"} {
		for _, in := range []error{errors.New("dial: s3cret-pw refused"), Usagef("bad s3cret-pw")} {
			out := hidePassword(in, dsn)
			if strings.Contains(out.Error(), "s3cret-pw") || IsUsage(out) != IsUsage(in) {
				t.Errorf("%s: %v became %v", dsn, in, out)
			}
		}
	}
	if err := errors.New("plain"); hidePassword(err, "postgres://u@h/db") != err {
		t.Error("an error without the password was changed")
	}
}
