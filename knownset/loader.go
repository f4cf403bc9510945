package knownset

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// Loader keeps a Set loaded from the listener's hooks: call Connected after
// every (re)connect once LISTEN is in place, Disconnected when the connection
// is lost, and Add, Remove and Rescan for notifications.
type Loader struct {
	set  *Set
	scan ScanFunc
	opt  LoaderOptions

	ctx    context.Context
	stop   context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	cancel context.CancelFunc // of the scheduled or running load
	loaded bool               // a first load was scheduled: later ones get jitter
}

// LoaderOptions tune a Loader.
type LoaderOptions struct {
	// Jitter bounds the random delay before a reload after a reconnect (the
	// first load starts at once), so that instances that lost the same
	// server do not all scan the token table in the same second.
	Jitter time.Duration
	// RetryMin and RetryMax bound the backoff between failed loads.
	RetryMin, RetryMax time.Duration
	// Loaded, if set, runs after each load that made the set current, with
	// the number of entries and the time the scan and build took.
	Loaded func(n int, took time.Duration)
	// LogError, if set, reports failed loads (the loader retries).
	LogError func(error)
}

// Default loader options.
const (
	DefaultJitter   = 10 * time.Second
	defaultRetryMin = time.Second
	defaultRetryMax = 30 * time.Second
)

// NewLoader returns a loader of set from scan; Stop ends it.
func NewLoader(set *Set, scan ScanFunc, opt LoaderOptions) *Loader {
	if opt.Jitter < 0 {
		opt.Jitter = 0
	}
	if opt.RetryMin <= 0 {
		opt.RetryMin = defaultRetryMin
	}
	if opt.RetryMax < opt.RetryMin {
		opt.RetryMax = max(defaultRetryMax, opt.RetryMin)
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Loader{set: set, scan: scan, opt: opt, ctx: ctx, stop: stop}
}

// Set returns the set the loader keeps.
func (l *Loader) Set() *Set { return l.set }

// Connected marks the set stale and schedules a load: at once the first
// time, after a random delay up to Jitter afterwards. A load scheduled or
// running before is cancelled.
func (l *Loader) Connected() { l.schedule(true) }

// Rescan is Connected for a notification that could not list every created
// or deleted token.
func (l *Loader) Rescan() { l.schedule(true) }

// Disconnected marks the set stale and cancels a scheduled or running load.
func (l *Loader) Disconnected() {
	l.set.MarkStale()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cancel != nil {
		l.cancel()
		l.cancel = nil
	}
}

// Add and Remove apply a notified creation or deletion.
func (l *Loader) Add(p uint64)    { l.set.Add(p) }
func (l *Loader) Remove(p uint64) { l.set.Remove(p) }

// Apply applies a notification's changes (Apply).
func (l *Loader) Apply(created, deleted [][]byte, rescan bool) { Apply(l, created, deleted, rescan) }

// Changer is a set of known tokens as notifications change it; Loader is
// one.
type Changer interface {
	Add(prefix uint64)
	Remove(prefix uint64)
	Rescan()
}

// Apply applies to k the tokens a notification reports created and
// deleted (their hashes; see PrefixOf), or, with rescan (a change too large
// to list), a reload of the whole set instead.
func Apply(k Changer, created, deleted [][]byte, rescan bool) {
	if rescan {
		k.Rescan()
		return
	}
	for _, h := range created {
		if p, ok := PrefixOf(h); ok {
			k.Add(p)
		}
	}
	for _, h := range deleted {
		if p, ok := PrefixOf(h); ok {
			k.Remove(p)
		}
	}
}

// AddLocal records a token this instance created (Set.AddLocal).
func (l *Loader) AddLocal(p uint64) { l.set.AddLocal(p) }

// Stop cancels loads and waits for them to end.
func (l *Loader) Stop() {
	l.stop()
	l.wg.Wait()
}

func (l *Loader) schedule(jitter bool) {
	l.set.MarkStale()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ctx.Err() != nil {
		return
	}
	if l.cancel != nil {
		l.cancel()
	}
	var delay time.Duration
	if l.loaded && jitter && l.opt.Jitter > 0 {
		delay = rand.N(l.opt.Jitter)
	}
	l.loaded = true
	ctx, cancel := context.WithCancel(l.ctx)
	l.cancel = cancel
	l.wg.Add(1)
	go l.run(ctx, delay)
}

func (l *Loader) run(ctx context.Context, delay time.Duration) {
	defer l.wg.Done()
	retry := l.opt.RetryMin
	for {
		if !sleep(ctx, delay) {
			return
		}
		start := time.Now()
		err := l.set.Load(ctx, l.scan)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			if l.opt.Loaded != nil && l.set.Current() {
				l.opt.Loaded(l.set.Len(), time.Since(start))
			}
			return
		}
		if l.opt.LogError != nil {
			l.opt.LogError(err)
		}
		delay, retry = retry, min(2*retry, l.opt.RetryMax)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
