package adminapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/armgate/armgate/adminapi/request"
	"github.com/armgate/armgate/storage"
)

// Lifecycle events: GET /events lists the outbox by status, POST
// /events/{event_id}/retry puts a failed event back in the queue. Both
// need an admin credential.

// EventStore is the part of storage.Store the events endpoints use.
type EventStore interface {
	ListEvents(ctx context.Context, status, after string, limit int) ([]storage.Event, bool, error)
	RetryEvent(ctx context.Context, actor, id string) (storage.Event, error)
}

var _ EventStore = (*storage.Store)(nil)

// EventsPage is a page of GET /events, oldest first. NextCursor is null on
// the last page.
type EventsPage struct {
	Events     []Event `json:"events"`
	NextCursor *string `json:"next_cursor"`
}

// ParseEventStatus returns the status filter of GET /events: failed when
// empty, else pending, sent or failed.
func ParseEventStatus(s string) (string, error) {
	switch s {
	case "":
		return storage.EventFailed, nil
	case storage.EventPending, storage.EventSent, storage.EventFailed:
		return s, nil
	}
	return "", badRequest("status must be %q, %q or %q, got %q", storage.EventFailed, storage.EventPending, storage.EventSent, s)
}

// ParseEventID checks an event id (the webhook-id the receiver saw).
func ParseEventID(s string) (string, error) {
	if !storage.ValidEventID(s) {
		return "", badRequest("invalid event id %q: must be evt_ and 32 hexadecimal digits, as in the webhook-id header", s)
	}
	return s, nil
}

// errEventsOff answers the events endpoints of a store without events.
var errEventsOff = &Error{Status: http.StatusNotFound, Code: "not_found", Message: "lifecycle events are not available"}

func (h *handler) eventStore() (EventStore, error) {
	es, ok := h.store.(EventStore)
	if !ok {
		return nil, errEventsOff
	}
	return es, nil
}

func (h *handler) listEvents(w http.ResponseWriter, r *http.Request) error {
	es, err := h.eventStore()
	if err != nil {
		return err
	}
	q := r.URL.Query()
	status, err := ParseEventStatus(q.Get("status"))
	if err != nil {
		return err
	}
	limit, err := ParseLimit(q)
	if err != nil {
		return err
	}
	after := q.Get("cursor")
	if after != "" && !storage.ValidEventID(after) {
		return badRequest("invalid cursor: pass next_cursor from the previous page unchanged")
	}
	list, more, err := es.ListEvents(r.Context(), status, after, limit)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, EventsPageJSON(list, more))
	return nil
}

func (h *handler) retryEvent(w http.ResponseWriter, r *http.Request) error {
	es, err := h.eventStore()
	if err != nil {
		return err
	}
	id, _, err := change[request.Empty](r, func(r *http.Request) (string, error) {
		return ParseEventID(r.PathValue("event_id"))
	})
	if err != nil {
		return err
	}
	ev, err := es.RetryEvent(r.Context(), actor(r), id)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: "no event with id " + id}
	case errors.Is(err, storage.ErrEventNotFailed):
		return &Error{Status: http.StatusConflict, Code: "event_not_failed", Message: "only a failed event can be retried; this one was sent"}
	case err != nil:
		return err
	}
	WriteJSON(w, http.StatusOK, EventJSON(ev))
	return nil
}
