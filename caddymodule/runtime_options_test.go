package caddymodule

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// TestRuntimeOptions: retention defaults to 90 days and off turns it off;
// listener_heartbeat defaults to 5s and has a floor.
func TestRuntimeOptions(t *testing.T) {
	a := &App{}
	a.setDefaults()
	if a.retention() != 90*24*time.Hour || time.Duration(a.ListenerHeartbeat) != 5*time.Second {
		t.Errorf("defaults: retention %v, heartbeat %v; want 2160h, 5s", a.retention(), time.Duration(a.ListenerHeartbeat))
	}
	if err := a.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
	off := &App{RetentionOff: true}
	off.setDefaults()
	if off.retention() != 0 {
		t.Errorf("retention off: %v, want 0", off.retention())
	}
	for _, bad := range []*App{
		{ListenerHeartbeat: caddy.Duration(time.Millisecond)},
		{Retention: caddy.Duration(-time.Hour)},
	} {
		bad.setDefaults()
		if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "armgate:") {
			t.Errorf("%+v validated: %v", bad, err)
		}
	}
}
