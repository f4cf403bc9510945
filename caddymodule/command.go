package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/armgate/armgate/adminapi"
	"github.com/armgate/armgate/gateway"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "armgate",
		Usage: "token create --config <path> --user <id> --name <name> [--scope admin] [--expires-in <duration>]",
		Short: "Manages armgate tokens from the command line",
		Long: `
Creates armgate tokens directly in the database named by the armgate global
option of a config, without going through the admin endpoint. This is how the
first admin-scope token is made when no admin_key is configured.

'token create' creates the user if missing and prints only the plaintext
token on stdout: it is shown this once and cannot be read again.`,
		CobraFunc: func(cmd *cobra.Command) {
			tokenCmd := &cobra.Command{Use: "token", Short: "Manages tokens"}
			create := &cobra.Command{
				Use:   "create --config <path> --user <id> --name <name>",
				Short: "Creates a token and prints it once",
				Args:  cobra.NoArgs,
				RunE:  runTokenCreate,
			}
			f := create.Flags()
			f.StringP("config", "c", "", "Configuration file with the armgate global option (required)")
			f.StringP("adapter", "a", "", "Name of config adapter to apply")
			f.String("user", "", "User (ARM account) id (required)")
			f.String("name", "", "Token name (required)")
			f.StringSlice("scope", []string{token.ScopeAPI}, "Scopes: api, admin (repeat or comma-separate)")
			f.String("expires-in", "", "Lifetime as a Go duration, e.g. 720h (default: the config's token_lifetime)")
			tokenCmd.AddCommand(create)
			cmd.AddCommand(tokenCmd)
		},
	})
}

func runTokenCreate(cmd *cobra.Command, _ []string) error {
	f := cmd.Flags()
	configFile, _ := f.GetString("config")
	adapter, _ := f.GetString("adapter")
	userID, _ := f.GetString("user")
	name, _ := f.GetString("name")
	scopes, _ := f.GetStringSlice("scope")
	expiresIn, _ := f.GetString("expires-in")
	if configFile == "" || userID == "" || name == "" {
		return errors.New("--config, --user and --name are required")
	}
	if err := adminapi.ValidateUserID(userID); err != nil {
		return err
	}
	name, err := token.NormalizeName(name)
	if err != nil {
		return err
	}
	if scopes, err = token.NormalizeScopes(scopes); err != nil {
		return err
	}
	app, err := loadAppConfig(configFile, adapter)
	if err != nil {
		return err
	}
	expiresAt, err := token.Expiry(time.Now(), expiresIn, "",
		time.Duration(app.TokenLifetime), time.Duration(app.MaxTokenLifetime))
	if err != nil {
		return err
	}
	dsn := caddy.NewReplacer().ReplaceAll(app.Database, "")
	if dsn == "" {
		return errors.New("the armgate option's database resolved to an empty string")
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
	defer cancel()
	// The database alone: no cache, listener or background work.
	db, err := gateway.OpenDatabase(dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		return err
	}
	_, plain, err := db.Store().CreateToken(ctx, "cli", storage.NewToken{
		UserID: userID, Name: name, Scopes: scopes, ExpiresAt: expiresAt,
		MaxPerUser: app.MaxTokensPerUser, CreateUser: true,
	})
	if err != nil {
		return fmt.Errorf("creating token: %w", err)
	}
	_, err = fmt.Fprintln(cmd.OutOrStdout(), plain)
	return err
}

// loadAppConfig reads the armgate app from a config file (any adapter) and
// applies its defaults.
func loadAppConfig(configFile, adapter string) (*App, error) {
	cfgJSON, _, _, err := caddycmd.LoadConfig(configFile, adapter)
	if err != nil {
		return nil, err
	}
	var cfg struct {
		Apps struct {
			Armgate *App `json:"armgate"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		return nil, fmt.Errorf("reading %s: %w", configFile, err)
	}
	if cfg.Apps.Armgate == nil {
		return nil, fmt.Errorf("%s has no armgate global option (apps.armgate)", configFile)
	}
	cfg.Apps.Armgate.setDefaults()
	return cfg.Apps.Armgate, nil
}
