// Package admincli runs the admin API's calls from the command line: it
// validates the arguments with the admin API's own rules (so that the
// command line and the API refuse the same inputs with the same messages),
// runs the call on a store with audit actor "cli", and prints the admin
// API's JSON or a plain table. It does not import Caddy; caddymodule only
// registers the commands and resolves the config.
package admincli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/armgate/armgate/adminapi"
	"github.com/armgate/armgate/adminapi/request"
	"github.com/armgate/armgate/storage"
)

// Actor is the audit actor of every change made from the command line.
const Actor = "cli"

// UsageError is bad input: a missing or malformed argument. The command
// exits with status 2 for it, 1 for any other error.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Usagef returns a UsageError.
func Usagef(format string, args ...any) error {
	return &UsageError{fmt.Sprintf(format, args...)}
}

// IsUsage reports whether err is a usage error.
func IsUsage(err error) bool {
	var u *UsageError
	return errors.As(err, &u)
}

// ExitCode is the exit status for err: 0, 1 for a failure, 2 for a usage
// error.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case IsUsage(err):
		return 2
	}
	return 1
}

// usage turns the admin API's 400 into a usage error with the same message;
// other errors pass unchanged.
func usage(err error) error {
	var e *adminapi.Error
	if errors.As(err, &e) && e.Status == http.StatusBadRequest {
		return &UsageError{flagMessage(e.Message)}
	}
	if err != nil && !IsUsage(err) {
		return &UsageError{flagMessage(err.Error())}
	}
	return err
}

// flagNames turns the JSON field names in the admin API's validation
// messages into the command line's flags, so that a message names what the
// user typed.
var flagNames = strings.NewReplacer(
	"expires_in", "--expires-in", "expires_at", "--expires-at", "grace", "--grace",
	"display_name", "--display-name",
	"rate_limit.requests", "--requests", "rate_limit.window", "--window", "rate_limit: ", "",
	"allowed_ips: ", "--cidr: ", "allowed_ips", "--cidr",
)

// flagMessage is an admin API message with its field names turned into
// flags. Quoted text, the values as the user typed them (the messages quote
// them with %q), is left as it is.
func flagMessage(msg string) string {
	var b strings.Builder
	for msg != "" {
		i := strings.IndexByte(msg, '"')
		if i < 0 {
			b.WriteString(flagNames.Replace(msg))
			break
		}
		b.WriteString(flagNames.Replace(msg[:i]))
		n := quotedLen(msg[i:])
		b.WriteString(msg[i : i+n])
		msg = msg[i+n:]
	}
	return b.String()
}

// quotedLen is the length of the Go-quoted string s starts with, its
// escapes included; all of s when it is not closed.
func quotedLen(s string) int {
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(s)
}

// Runner runs calls on a store and prints their results on Out.
type Runner struct {
	Store  *storage.Store
	Limits request.TokenLimits
	Out    io.Writer
	// In is the standard input, for calls that read secrets from it.
	In io.Reader
	// JSON prints exactly the admin API's JSON for the call instead of a
	// plain table or line.
	JSON bool
	// Migrate brings the schema up to date; token create (the bootstrap)
	// and migrate call it.
	Migrate func(context.Context) error
	// Now is the clock for expiry checks; time.Now when nil.
	Now func() time.Time
}

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// printJSON writes v as the admin API writes its bodies.
func (r *Runner) printJSON(v any) error {
	return json.NewEncoder(r.Out).Encode(v)
}

// storeErr makes a store error a one-line message; what names the object
// for not found.
func storeErr(err error, what string) error {
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("%s not found", what)
	}
	return err
}

// userID checks a --user value.
func userID(id string) error {
	if id == "" {
		return Usagef("--user is required")
	}
	if err := adminapi.ValidateUserID(id); err != nil {
		return Usagef("invalid user id: %v", err)
	}
	return nil
}

// tokenID checks a --id value and returns it canonical.
func tokenID(id string) (string, error) {
	if id == "" {
		return "", Usagef("--id is required")
	}
	c, err := adminapi.ParseTokenID(id)
	return c, usage(err)
}

// oneLine joins the lines of a message, so that every failure is one line
// on stderr.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// Message is err as the one line the command prints on stderr.
func Message(err error) string { return oneLine(err.Error()) }
