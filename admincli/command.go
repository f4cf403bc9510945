package admincli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/armgate/armgate/adminapi/request"
	"github.com/armgate/armgate/gateway"
	"github.com/armgate/armgate/token"
)

// The `armgate` command as the host program (Caddy) registers it: its
// name, usage line and help. Build fills in its subcommands.
const (
	Name  = "armgate"
	Usage = "user|token|migrate <call> --config <path> [--adapter <name>] [--json] ..."
	Short = "Runs armgate's admin calls from the command line"
	Long  = `
Runs the admin API's calls directly on the database named by the armgate
global option of a config, without going through the admin endpoint: for
scripts, and for when the endpoint is not reachable. Changes are audited with
actor "cli" and reach running gateways like any other.

  user put|get|list|deactivate|reactivate
  token create|list|get|revoke|revoke-all|reapprove|rotate|delete|revoke-leaked
  events list|retry
  token limit|allow-ips|usage
  migrate

--json prints exactly the admin API's JSON for the call; without it, a plain
table or line. 'token create' and 'token rotate' print only the plaintext
token: it is shown this once and cannot be read again. 'token create' also
creates the user if missing, which is how the first admin-scope token is
made when no admin_key is configured. 'token revoke-leaked' reads the tokens
from standard input, never from the command line.

Exit status: 0 on success, 1 with a one-line message on stderr for a
failure, 2 for a usage error.`
)

// commandTimeout bounds one command's database work, so that an
// unreachable database is an error rather than a hang.
const commandTimeout = 30 * time.Second

// Config is what the calls take from the gateway's config file.
type Config struct {
	// Database is the connection string with its placeholders replaced;
	// DatabaseOption is the option as written (e.g. a placeholder), named
	// in the error when Database is empty.
	Database, DatabaseOption string
	Limits                   request.TokenLimits
	// Events is whether lifecycle events are configured: changes from
	// the command line then queue theirs too.
	Events bool
}

// Host is what the command tree needs from the program it runs in.
type Host struct {
	// LoadConfig reads the armgate settings of a config file, adapted
	// with adapter ("" for the host's default). An error it marks with
	// Usagef exits with status 2.
	LoadConfig func(configFile, adapter string) (Config, error)
	// ExitStatus returns what makes the program exit with code, which is
	// above 1; any other error returned by a command exits with 1.
	ExitStatus func(c *cobra.Command, code int) error
}

// Build adds the calls to cmd, the `armgate` command the host created, so
// that it fits caddycmd.Command's CobraFunc.
func (h Host) Build(cmd *cobra.Command) {
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return h.exit(c, Usagef("%v", err))
	})
	cmd.Args, cmd.RunE = cobra.ArbitraryArgs, h.needSubcommand
	users := h.group("user", "Manages users")
	users.AddCommand(
		h.call("put", "Creates or updates a user", userPut, userFlag, withFlags(
			strFlag("email", "Email address"), strFlag("display-name", "Display name"))),
		h.call("get", "Shows a user", userGet, userFlag),
		h.call("list", "Lists users, a page at a time", userList, withFlags(
			strFlag("status", "Only users in this status: active or deactivated"),
			strFlag("limit", "Users per page, 1 to 500 (default 50)"),
			strFlag("cursor", "The next page: the cursor the previous page printed"))),
		h.call("deactivate", "Deactivates a user: all their tokens stop working", userSetActive(false), userFlag),
		h.call("reactivate", "Reactivates a user", userSetActive(true), userFlag),
	)
	tokens := h.group("token", "Manages tokens")
	tokens.AddCommand(
		h.call("create", "Creates a token and prints it once", tokenCreate, userFlag, withFlags(
			strFlag("name", "Token name (required)"), expiryFlags,
			func(f *pflag.FlagSet) {
				f.StringSlice("scope", nil, "Scopes: api (default), admin; repeat or comma-separate")
			})),
		h.call("list", "Lists a user's tokens", tokenList, userFlag),
		h.call("get", "Shows a token", tokenGet, idFlag),
		h.call("revoke", "Revokes a token", tokenRevoke, idFlag, reasonFlag),
		h.call("revoke-all", "Revokes every token of a user and prints how many", tokenRevokeAll, userFlag, reasonFlag),
		h.call("reapprove", "Makes a revoked token active again", tokenReapprove, idFlag),
		h.call("rotate", "Replaces a token by a new one and prints the new one once", tokenRotate, idFlag, withFlags(
			strFlag("grace", fmt.Sprintf("How long the old token keeps working: 0s to %s (default %s)",
				token.FormatDuration(request.MaxGrace), token.FormatDuration(request.DefaultGrace))), expiryFlags)),
		h.call("delete", "Deletes a token, freeing its slot", tokenDelete, idFlag),
		h.call("limit", "Sets or removes a token's quota", tokenLimit, idFlag, limitFlags),
		h.call("allow-ips", "Sets or removes the addresses a token may be used from", tokenAllowIPs, idFlag, allowFlags),
		h.call("usage", "Shows a token's requests per UTC day and its last client address", tokenUsage, idFlag,
			strFlag("days", "Days up to today, 1 to 90 (default 30)")),
		h.call("revoke-leaked", "Revokes as leaked the tokens read from standard input", tokenRevokeLeaked,
			strFlag("url", "Where the tokens were found, recorded with each")),
	)
	evts := h.group("events", "Lists and retries lifecycle events (webhooks)")
	evts.AddCommand(
		h.call("list", "Lists events, oldest first (default: the failed ones)", eventList, withFlags(
			strFlag("status", "failed (default), pending or sent"),
			strFlag("limit", "Events per page, 1 to 500 (default 50)"),
			strFlag("cursor", "The next page: the cursor the previous page printed"))),
		h.call("retry", "Puts a failed event back in the queue", eventRetry, strFlag("id", "Event id, evt_... (required)")),
	)
	cmd.AddCommand(users, tokens, evts,
		h.call("migrate", "Applies the schema migrations and prints the schema version", migrate))
}

// A runFunc runs one call; flags are read with optional, which returns nil
// for a flag not given.
type runFunc func(ctx context.Context, r *Runner, f *pflag.FlagSet) error

func (h Host) group(name, short string) *cobra.Command {
	return &cobra.Command{Use: name, Short: short, Args: cobra.ArbitraryArgs, RunE: h.needSubcommand}
}

// needSubcommand answers a group called without a known subcommand.
func (h Host) needSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return h.exit(cmd, Usagef("unknown command %q for %q", args[0], cmd.CommandPath()))
	}
	return h.exit(cmd, Usagef("%q needs a subcommand (see --help)", cmd.CommandPath()))
}

func strFlag(name, usage string) func(*pflag.FlagSet) {
	return func(f *pflag.FlagSet) { f.String(name, "", usage) }
}

func withFlags(fs ...func(*pflag.FlagSet)) func(*pflag.FlagSet) {
	return func(f *pflag.FlagSet) {
		for _, add := range fs {
			add(f)
		}
	}
}

var (
	userFlag    = strFlag("user", "User (ARM account) id (required)")
	idFlag      = strFlag("id", "Token id (required)")
	reasonFlag  = strFlag("reason", "Reason, shown with the token and in the audit log")
	expiryFlags = withFlags(
		strFlag("expires-in", "Lifetime as a Go duration, e.g. 720h (default: the config's token_lifetime)"),
		strFlag("expires-at", "Expiry as an RFC 3339 time, instead of --expires-in"))
	limitFlags = func(f *pflag.FlagSet) {
		f.Int64("requests", 0, "Requests per window, from 1")
		f.String("window", "", "Window as a Go duration, 1s to 24h, e.g. 1h")
		f.Bool("clear", false, "Remove the token's quota")
	}
	allowFlags = func(f *pflag.FlagSet) {
		f.StringSlice("cidr", nil, "IPv4 or IPv6 CIDR the token may be used from; repeat or comma-separate (at most 32)")
		f.Bool("clear", false, "Remove the allow-list: the token works from anywhere")
	}
)

// call is a command that runs fn on the database of the config.
func (h Host) call(name, short string, fn runFunc, flags ...func(*pflag.FlagSet)) *cobra.Command {
	c := &cobra.Command{
		Use:   name + " --config <path>",
		Short: short,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return h.exit(c, Usagef("unexpected argument %q (values are given with flags)", args[0]))
			}
			return nil
		},
		RunE: func(c *cobra.Command, _ []string) error { return h.exit(c, h.run(c, fn)) },
	}
	f := c.Flags()
	f.StringP("config", "c", "", "Configuration file with the armgate global option (required)")
	f.StringP("adapter", "a", "", "Name of config adapter to apply")
	f.Bool("json", false, "Print the admin API's JSON")
	for _, add := range flags {
		add(f)
	}
	return c
}

// run loads the config, opens its database and runs fn. The DSN's password
// never shows in an error.
func (h Host) run(c *cobra.Command, fn runFunc) (err error) {
	f := c.Flags()
	configFile, _ := f.GetString("config")
	adapter, _ := f.GetString("adapter")
	asJSON, _ := f.GetBool("json")
	if configFile == "" {
		return Usagef("--config is required")
	}
	cfg, err := h.LoadConfig(configFile, adapter)
	if err != nil {
		return err
	}
	dsn := cfg.Database
	if dsn == "" {
		return fmt.Errorf("the armgate option's database in %s (%s) is empty: set the variable it names; "+
			"for the gateway scripts/run.sh started, run `. .armgate/env` in this shell first", configFile, cfg.DatabaseOption)
	}
	defer func() { err = hidePassword(err, dsn) }()
	ctx, cancel := context.WithTimeout(c.Context(), commandTimeout)
	defer cancel()
	// The database alone: no cache, listener or background work.
	db, err := gateway.OpenDatabase(dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	if cfg.Events {
		// Changes from the command line queue their lifecycle events too.
		db.Store().EnableEvents()
	}
	r := &Runner{
		Store:   db.Store(),
		Limits:  cfg.Limits,
		Out:     c.OutOrStdout(),
		In:      c.InOrStdin(),
		JSON:    asJSON,
		Migrate: db.Migrate,
	}
	return fn(ctx, r, f)
}

// hidePassword replaces the DSN's password in err's message, should a
// driver error ever quote it.
func hidePassword(err error, dsn string) error {
	if err == nil {
		return nil
	}
	msg, hid := gateway.HidePassword(err.Error(), dsn)
	if !hid {
		return err
	}
	if IsUsage(err) {
		return Usagef("%s", msg)
	}
	return errors.New(msg)
}

// exit prints err as one line on stderr and returns what makes the program
// exit with status 1, or 2 for a usage error.
func (h Host) exit(c *cobra.Command, err error) error {
	if err == nil {
		return nil
	}
	c.SilenceErrors = true
	fmt.Fprintln(c.ErrOrStderr(), "armgate:", Message(err))
	if code := ExitCode(err); code > 1 {
		return h.ExitStatus(c, code)
	}
	return err
}

// optional returns the value of a flag that was given, else nil, so that
// "not given" and "given empty" differ as omitted and "" do in the API.
func optional(f *pflag.FlagSet, name string) *string {
	if !f.Changed(name) {
		return nil
	}
	v, _ := f.GetString(name)
	return &v
}

func get(f *pflag.FlagSet, name string) string {
	v, _ := f.GetString(name)
	return v
}

func userPut(ctx context.Context, r *Runner, f *pflag.FlagSet) error {
	return r.UserPut(ctx, get(f, "user"), optional(f, "email"), optional(f, "display-name"))
}

func userGet(ctx context.Context, r *Runner, f *pflag.FlagSet) error {
	return r.UserGet(ctx, get(f, "user"))
}

func userList(ctx context.Context, r *Runner, f *pflag.FlagSet) error {
	return r.UserList(ctx, get(f, "status"), optional(f, "limit"), get(f, "cursor"))
}

func userSetActive(active bool) runFunc {
	return func(ctx context.Context, r *Runner, f *pflag.FlagSet) error {
		return r.UserSetActive(ctx, get(f, "user"), active)
	}
}

func tokenCreate(ctx context.Context, r *Runner, f *pflag.FlagSet) error {
	var scopes []string // nil: the default
	if f.Changed("scope") {
		scopes, _ = f.GetStringSlice("scope")
		if scopes == nil {
			scopes = []string{}
		}
	}
	return r.TokenCreate(ctx, get(f, "user"), request.CreateToken{
		Name: get(f, "name"), Scopes: scopes,
		ExpiresIn: optional(f, "expires-in"), ExpiresAt: optional(f, "expires-at"),
	})
}

func eventList(ctx context.Context, r *Runner, f *pflag.FlagSet) error {
	return r.EventList(ctx, get(f, "status"), optional(f, "limit"), get(f, "cursor"))
}

func eventRetry(ctx context.Context, r *Runner, f *pflag.FlagSet) error {
	return r.EventRetry(ctx, get(f, "id"))
}

func tokenList(ctx context.Context, r *Runner, f *pflag.FlagSet) error {
	return r.TokenList(ctx, get(f, "user"))
}

func tokenGet(ctx context.Context, r *Runner, f *pflag.FlagSet) error {
	return r.TokenGet(ctx, get(f, "id"))
}

func tokenRevoke(ctx context.Context, r *Runner, f *pflag.FlagSet) error {
	return r.TokenRevoke(ctx, get(f, "id"), get(f, "reason"))
}

func tokenRevokeAll(ctx context.Context, r *Runner, f *pflag.FlagSet) error {
	return r.TokenRevokeAll(ctx, get(f, "user"), get(f, "reason"))
}

func tokenReapprove(ctx context.Context, r *Runner, f *pflag.FlagSet) error {
	return r.TokenReapprove(ctx, get(f, "id"))
}

func tokenRotate(ctx context.Context, r *Runner, f *pflag.FlagSet) error {
	return r.TokenRotate(ctx, get(f, "id"), request.Rotate{
		Grace:     optional(f, "grace"),
		ExpiresIn: optional(f, "expires-in"), ExpiresAt: optional(f, "expires-at"),
	})
}

func tokenRevokeLeaked(ctx context.Context, r *Runner, f *pflag.FlagSet) error {
	return r.TokenRevokeLeaked(ctx, r.In, get(f, "url"))
}

func tokenDelete(ctx context.Context, r *Runner, f *pflag.FlagSet) error {
	return r.TokenDelete(ctx, get(f, "id"))
}

func tokenLimit(ctx context.Context, r *Runner, f *pflag.FlagSet) error {
	l := Limit{ID: get(f, "id"), Window: optional(f, "window")}
	l.Clear, _ = f.GetBool("clear")
	if f.Changed("requests") {
		n, _ := f.GetInt64("requests")
		l.Requests = &n
	}
	return r.TokenLimit(ctx, l)
}

func tokenAllowIPs(ctx context.Context, r *Runner, f *pflag.FlagSet) error {
	cidrs, _ := f.GetStringSlice("cidr")
	clear, _ := f.GetBool("clear")
	return r.TokenAllowIPs(ctx, get(f, "id"), cidrs, clear)
}

func tokenUsage(ctx context.Context, r *Runner, f *pflag.FlagSet) error {
	return r.TokenUsage(ctx, get(f, "id"), optional(f, "days"))
}

func migrate(ctx context.Context, r *Runner, _ *pflag.FlagSet) error {
	return r.MigrateSchema(ctx)
}
