// Package quota counts requests per token and per user in fixed windows,
// in process and without allocating on the request path, and reconciles
// the counts of every instance through a shared store (PostgreSQL) with one
// batched statement per sync interval. It also buffers each token's usage
// per UTC day. It knows neither Caddy nor PostgreSQL: the store sits behind
// the Store interface.
//
// Windows are fixed and aligned to the Unix epoch (a 1h window runs from one
// full UTC hour to the next), so that every instance agrees on them without
// talking. An instance learns another's requests at its own next sync after
// the other's, up to two intervals late; the cluster may therefore admit
// more than the limit, by at most 2 × instances × (request rate per
// instance) × sync interval, and never by more than (instances − 1) × limit.
// With the store unreachable every instance keeps counting on its own
// (quotas fail open).
package quota

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Bounds of a Limit.
const (
	MinWindow   = time.Second
	MaxWindow   = 24 * time.Hour
	MaxRequests = 1_000_000_000
)

// Limit is a number of requests per window. The zero Limit is no limit.
type Limit struct {
	Requests int64
	Window   time.Duration
}

// IsZero reports whether l is no limit.
func (l Limit) IsZero() bool { return l.Requests == 0 }

// Validate checks that l is no limit, or 1..MaxRequests requests per a
// whole number of seconds from 1s to 24h.
func (l Limit) Validate() error {
	if l.Requests == 0 && l.Window == 0 {
		return nil
	}
	switch {
	case l.Requests < 1 || l.Requests > MaxRequests:
		return fmt.Errorf("requests must be from 1 to %d, got %d", MaxRequests, l.Requests)
	case l.Window < MinWindow || l.Window > MaxWindow:
		return fmt.Errorf("window must be from 1s to 24h, got %s", l.Window)
	case l.Window%time.Second != 0:
		return fmt.Errorf("window must be a whole number of seconds, got %s", l.Window)
	}
	return nil
}

// Seconds returns the window in seconds.
func (l Limit) Seconds() int64 { return int64(l.Window / time.Second) }

// String formats l as "1000/1h0m0s", or "none".
func (l Limit) String() string {
	if l.IsZero() {
		return "none"
	}
	return fmt.Sprintf("%d/%s", l.Requests, l.Window)
}

// limitJSON is Limit on the wire: {"requests": 1000, "window": "1h"}.
type limitJSON struct {
	Requests int64  `json:"requests"`
	Window   string `json:"window"`
}

// MarshalJSON writes {"requests": N, "window": "1h"}.
func (l Limit) MarshalJSON() ([]byte, error) {
	return json.Marshal(limitJSON{Requests: l.Requests, Window: ShortWindow(l.Window)})
}

// ShortWindow formats d as typed: "1h", "1h30m", "90s" is "1m30s".
func ShortWindow(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// UnmarshalJSON reads {"requests": N, "window": "<Go duration>"} and
// validates it.
func (l *Limit) UnmarshalJSON(b []byte) error {
	var j limitJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	w, err := time.ParseDuration(j.Window)
	if err != nil {
		return errors.New(`window must be a duration such as "1h" or "30s"`)
	}
	v := Limit{Requests: j.Requests, Window: w}
	if v.IsZero() {
		return errors.New("requests must be positive")
	}
	if err := v.Validate(); err != nil {
		return err
	}
	*l = v
	return nil
}
