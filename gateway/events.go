package gateway

import (
	"context"

	"github.com/armgate/armgate/events"
)

// openEvents enables lifecycle events on the store and builds their sender
// when cfg configures them.
func (r *Runtime) openEvents(cfg *events.Config) error {
	if cfg == nil {
		return nil
	}
	sender, err := events.New(*cfg, r.db.Store(), r.logger.Named("events"))
	if err != nil {
		return err
	}
	r.db.Store().EnableEvents()
	r.events = sender
	return nil
}

// Events returns the lifecycle event sender, nil when events are not
// configured.
func (r *Runtime) Events() *events.Sender { return r.events }

// runEvents delivers lifecycle events, once the schema is in place, until
// ctx ends. Every instance runs a sender; the outbox's row locks let one
// deliver a given event at a time.
func (r *Runtime) runEvents(ctx context.Context) {
	if r.events == nil {
		return
	}
	select {
	case <-ctx.Done():
		return
	case <-r.migrated:
	}
	r.events.Run(ctx)
}

// wakeEvents makes the sender look at the queue: a change was notified,
// and it may have queued an event.
func (r *Runtime) wakeEvents() {
	if r.events != nil {
		r.events.Wake()
	}
}
