package adminapi

import (
	"net/http"
	"strconv"

	"github.com/armgate/armgate/adminapi/request"
	"github.com/armgate/armgate/quota"
	"github.com/armgate/armgate/storage"
)

// Per-token controls: quotas and IP allow-lists, and the usage per day.

// Usage days: GET /tokens/{token_id}/usage?days= takes 1 to MaxUsageDays,
// DefaultUsageDays when omitted.
const (
	DefaultUsageDays = 30
	MaxUsageDays     = 90
)

// Usage is the answer of GET /tokens/{token_id}/usage: one entry per UTC
// day, oldest first, days without requests as zeros.
type Usage struct {
	Days   []DayUsage `json:"days"`
	LastIP *string    `json:"last_ip"`
}

// ParseUsageDays reads ?days=: 1 to MaxUsageDays, DefaultUsageDays if empty.
func ParseUsageDays(s string) (int, error) {
	if s == "" {
		return DefaultUsageDays, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxUsageDays {
		return 0, badRequest("days must be a whole number from 1 to %d, got %q", MaxUsageDays, s)
	}
	return n, nil
}

func (h *handler) patchToken(w http.ResponseWriter, r *http.Request) error {
	id, body, err := change[request.TokenControls](r, pathTokenID)
	if err != nil {
		return err
	}
	c, err := body.Controls()
	if err != nil {
		return err
	}
	t, inv, err := h.store.SetTokenControls(r.Context(), actor(r), id, ControlsToStore(c), nil)
	if err != nil {
		return err
	}
	return h.changed(w, inv, http.StatusOK, TokenJSON(t))
}

func (h *handler) tokenUsage(w http.ResponseWriter, r *http.Request) error {
	id, err := pathTokenID(r)
	if err != nil {
		return err
	}
	days, err := ParseUsageDays(r.URL.Query().Get("days"))
	if err != nil {
		return err
	}
	u, err := usage(r, h.store, id, days)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, u)
	return nil
}

// usage reads the token's usage; the caller has checked who may see it.
func usage(r *http.Request, s Store, id string, days int) (Usage, error) {
	d, last, err := s.TokenUsage(r.Context(), id, days)
	if err != nil {
		return Usage{}, err
	}
	return UsageJSON(d, last), nil
}

// setUserRateLimit sets the user's quota (a zero Limit removes it) and
// returns the user as it now is.
func (h *handler) setUserRateLimit(r *http.Request, id string, l quota.Limit) (storage.User, error) {
	inv, err := h.store.SetUserRateLimit(r.Context(), actor(r), id, l)
	if err != nil {
		return storage.User{}, err
	}
	h.invalidate(inv)
	return h.store.GetUser(r.Context(), id)
}
