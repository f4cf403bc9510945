package caddymodule

import (
	"reflect"
	"testing"
	"time"

	"github.com/armgate/armgate/events"
	"github.com/armgate/armgate/gateway"
)

// TestResourceKeyWholeConfig: changing any setting of the gateway config,
// nested ones included, changes the runtime's key; the logger and the hooks
// do not.
func TestResourceKeyWholeConfig(t *testing.T) {
	base := gateway.Config{DSN: "postgres://a@h/db", Events: &events.Config{URL: "https://x.example/"}}
	key := func(c gateway.Config) string {
		t.Helper()
		k, err := resourceKey(c)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	baseKey := key(base)
	if key(base) != baseKey {
		t.Fatal("the key is not stable")
	}
	changed := 0
	// walk sets each settable leaf of v (reached by path) in turn, checks
	// the key, and restores it.
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		switch v.Kind() {
		case reflect.Struct:
			for i := range v.NumField() {
				f := v.Type().Field(i)
				if !f.IsExported() || f.Tag.Get("json") == "-" {
					continue
				}
				walk(v.Field(i), path+"."+f.Name)
			}
			return
		case reflect.Pointer:
			if v.Type().Elem().Kind() == reflect.Struct && !v.IsNil() && v.Type().Elem().PkgPath() != "github.com/armgate/armgate/knownset" {
				walk(v.Elem(), path)
			}
			return
		}
		old := reflect.ValueOf(v.Interface())
		switch v.Kind() {
		case reflect.String:
			v.SetString(v.String() + "-changed")
		case reflect.Int, reflect.Int64:
			v.SetInt(v.Int() + int64(time.Second) + 1)
		case reflect.Float64:
			v.SetFloat(v.Float() + 1.5)
		case reflect.Bool:
			v.SetBool(!v.Bool())
		default:
			t.Errorf("%s: kind %s not covered by this test", path, v.Kind())
			return
		}
		if key(base) == baseKey {
			t.Errorf("changing %s keeps the runtime key", path)
		}
		changed++
		v.Set(old)
		if key(base) != baseKey {
			t.Fatalf("restoring %s did not restore the key", path)
		}
	}
	walk(reflect.ValueOf(&base).Elem(), "Config")
	if changed < 15 {
		t.Errorf("only %d settings changed; the walk missed some", changed)
	}
	other := base
	other.Hooks.Invalidation = func() {}
	if key(other) != baseKey {
		t.Error("the hooks change the key")
	}
}
