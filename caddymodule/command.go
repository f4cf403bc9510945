package caddymodule

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/armgate/armgate/adminapi/request"
	"github.com/armgate/armgate/admincli"
)

// The `caddy armgate` command: admincli builds it; this only reads its
// settings from a Caddy config and gives it Caddy's exit statuses.
func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name: admincli.Name, Usage: admincli.Usage, Short: admincli.Short, Long: admincli.Long,
		CobraFunc: admincli.Host{LoadConfig: loadCLIConfig, ExitStatus: exitStatus}.Build,
	})
}

// exitStatus makes Caddy exit with code: only Caddy's wrapper can carry an
// exit status other than 1.
func exitStatus(c *cobra.Command, code int) error {
	return caddycmd.WrapCommandFuncForCobra(func(caddycmd.Flags) (int, error) { return code, nil })(c, nil)
}

// loadCLIConfig reads the command's settings from the armgate app of a
// config file, its placeholders replaced.
func loadCLIConfig(configFile, adapter string) (admincli.Config, error) {
	app, err := loadAppConfig(configFile, adapter)
	if err != nil {
		return admincli.Config{}, err
	}
	return admincli.Config{
		Database:       caddy.NewReplacer().ReplaceAll(app.Database, ""),
		DatabaseOption: app.Database,
		Limits: request.TokenLimits{
			MaxPerUser:  app.MaxTokensPerUser,
			Lifetime:    time.Duration(app.TokenLifetime),
			MaxLifetime: time.Duration(app.MaxTokenLifetime),
		},
		Events: app.Events != nil,
	}, nil
}

// loadAppConfig reads the armgate app from a config file and applies its
// defaults. The adapter is chosen as caddy run chooses it (caddyfile for a
// file named Caddyfile* or *.caddyfile); unlike caddycmd.LoadConfig this
// logs nothing, so that a failure is the one line the command prints.
func loadAppConfig(configFile, adapter string) (*App, error) {
	body, err := os.ReadFile(configFile)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	base := strings.ToLower(filepath.Base(configFile))
	if adapter == "" && filepath.Ext(base) != ".json" &&
		(strings.HasPrefix(base, "caddyfile") || strings.HasSuffix(base, ".caddyfile")) {
		adapter = "caddyfile"
	}
	if adapter != "" {
		a := caddyconfig.GetAdapter(adapter)
		if a == nil {
			return nil, admincli.Usagef("unrecognized config adapter: %s", adapter)
		}
		if body, _, err = a.Adapt(body, map[string]any{"filename": configFile}); err != nil {
			return nil, fmt.Errorf("adapting config using %s: %w", adapter, err)
		}
	}
	var cfg struct {
		Apps struct {
			Armgate *App `json:"armgate"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(body, &cfg); err != nil {
		return nil, fmt.Errorf("reading %s: %w", configFile, err)
	}
	if cfg.Apps.Armgate == nil {
		return nil, fmt.Errorf("%s has no armgate global option (apps.armgate)", configFile)
	}
	cfg.Apps.Armgate.setDefaults()
	return cfg.Apps.Armgate, nil
}
