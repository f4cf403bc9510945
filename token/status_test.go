package token_test

import (
	"encoding/json"
	"testing"

	"github.com/armgate/armgate/token"
)

func TestStatusNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		s          token.Status
		name, desc string
	}{
		{token.Unknown, "invalid", "The access token is invalid"},
		{token.Active, "active", ""},
		{token.Expired, "expired", "The access token expired"},
		{token.Revoked, "revoked", "The access token was revoked"},
		{token.Deactivated, "deactivated", "The access token's user is deactivated"},
		{token.Status(200), "invalid", "The access token is invalid"},
	}
	for _, tt := range tests {
		if got := tt.s.String(); got != tt.name {
			t.Errorf("Status(%d).String() = %q, want %q", tt.s, got, tt.name)
		}
		if got := tt.s.Description(); got != tt.desc {
			t.Errorf("Status(%d).Description() = %q, want %q", tt.s, got, tt.desc)
		}
	}
	var zero token.Status
	if zero != token.Unknown {
		t.Error("the zero Status is not Unknown")
	}
}

func TestStatusJSON(t *testing.T) {
	t.Parallel()
	type row struct {
		Status token.Status `json:"status"`
	}
	for _, s := range []token.Status{token.Unknown, token.Active, token.Expired, token.Revoked, token.Deactivated} {
		b, err := json.Marshal(row{s})
		if err != nil {
			t.Fatal(err)
		}
		if want := `{"status":"` + s.String() + `"}`; string(b) != want {
			t.Errorf("Marshal(%v) = %s, want %s", s, b, want)
		}
		var back row
		if err := json.Unmarshal(b, &back); err != nil || back.Status != s {
			t.Errorf("Unmarshal(%s) = %v, %v", b, back.Status, err)
		}
	}
	var r row
	if err := json.Unmarshal([]byte(`{"status":"pending"}`), &r); err == nil {
		t.Error("Unmarshal of an unknown status name succeeded")
	}
}
