package adminapi

import (
	"net/http"
	"strconv"
)

// WriteLimiter counts the state-changing self-service calls of each
// signed-in user and refuses a user who makes too many; *limiter.Names is
// one.
type WriteLimiter interface {
	// Take counts one call of user and reports true, unless user is over
	// the limit: then it reports false and for how many more whole
	// seconds.
	Take(user string) (retryAfter int, ok bool)
}

// writeGuard admits the state-changing calls of the self-service API: from
// the site's own pages only, and at most so many per user.
type writeGuard struct {
	origin OriginPolicy
	limit  WriteLimiter
}

func newWriteGuard(o SelfOptions) writeGuard {
	return writeGuard{origin: o.Origin, limit: o.WriteLimit}
}

// admit decides on a state-changing call of user (never empty). A call from
// another site is refused before it is counted, so that no other site can
// spend a user's budget; a user over the limit gets 429 with Retry-After
// (set on w here). Every admitted call counts, whatever it then answers.
func (g writeGuard) admit(w http.ResponseWriter, r *http.Request, user string) *Error {
	if err := g.origin.Check(r); err != nil {
		return err
	}
	if g.limit == nil {
		return nil
	}
	if secs, ok := g.limit.Take(user); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		return errTooManyWrites
	}
	return nil
}

// errTooManyWrites is the refusal of a user over the write limit.
var errTooManyWrites = &Error{Status: http.StatusTooManyRequests, Code: "too_many_requests",
	Message: "Too many changes to your tokens in a short time; retry after the time in Retry-After"}
