package admincli

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/armgate/armgate/adminapi"
	"github.com/armgate/armgate/storage"
)

// EventList lists lifecycle events in the outbox with status (failed when
// empty), oldest first, a page at a time (GET /events). limit is the raw
// --limit value, nil for the default.
func (r *Runner) EventList(ctx context.Context, status string, limit *string, cursor string) error {
	status, err := adminapi.ParseEventStatus(status)
	if err != nil {
		return usage(err)
	}
	n, err := pageLimit(limit)
	if err != nil {
		return err
	}
	if cursor != "" && !storage.ValidEventID(cursor) {
		return Usagef("invalid cursor: pass the cursor the previous page printed")
	}
	list, more, err := r.Store.ListEvents(ctx, status, cursor, n)
	if err != nil {
		return err
	}
	page := adminapi.EventsPageJSON(list, more)
	if r.JSON {
		return r.printJSON(page)
	}
	t := newTable(r.Out, "ID", "TYPE", "USER", "STATUS", "ATTEMPTS", "CREATED", "LAST ERROR")
	for _, e := range list {
		t.row(e.ID, e.Type, e.UserID, e.Status, strconv.Itoa(e.Attempts), stamp(&e.CreatedAt), str(e.LastError))
	}
	if err := t.flush(); err != nil {
		return err
	}
	if page.NextCursor != nil {
		_, err = fmt.Fprintf(r.Out, "more: --cursor %s\n", *page.NextCursor)
	}
	return err
}

// EventRetry puts a failed event back in the queue (POST
// /events/{id}/retry), audited with actor cli.
func (r *Runner) EventRetry(ctx context.Context, id string) error {
	if id == "" {
		return Usagef("--id is required")
	}
	if _, err := adminapi.ParseEventID(id); err != nil {
		return usage(err)
	}
	e, err := r.Store.RetryEvent(ctx, Actor, id)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return fmt.Errorf("event %s not found", id)
	case err != nil:
		return err
	}
	if r.JSON {
		return r.printJSON(adminapi.EventJSON(e))
	}
	_, err = fmt.Fprintf(r.Out, "%s %s\n", e.ID, e.Status)
	return err
}
