package adminapi

import (
	"context"
	"net/http"
	"strconv"

	"github.com/armgate/armgate/gateway"
)

// healthBody is the JSON of GET /healthz.
type healthBody struct {
	Status     string `json:"status"`
	Database   string `json:"database"`
	Listener   string `json:"listener"`
	Migrations string `json:"migrations,omitempty"`
}

const healthzPattern = "GET /healthz"

// healthz answers 200 when the instance can serve and 503 naming what is
// down otherwise, without a credential, for load balancers. It never
// touches the database itself: the health source caches its ping.
func (h *handler) healthz(w http.ResponseWriter, r *http.Request) {
	s := gateway.Health{Database: true, Listener: true, Migrated: true}
	if h.health != nil {
		s = h.health(r.Context())
	}
	b := healthBody{Status: "ok", Database: upDown(s.Database), Listener: upDown(s.Listener)}
	if !s.Migrated {
		b.Migrations = "pending"
	}
	if !s.Database || !s.Listener || !s.Migrated {
		b.Status = "unavailable"
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
		WriteJSON(w, http.StatusServiceUnavailable, b)
		return
	}
	WriteJSON(w, http.StatusOK, b)
}

func upDown(up bool) string {
	if up {
		return "up"
	}
	return "down"
}

// healthFunc is the type of Options.Health.
type healthFunc = func(context.Context) gateway.Health
