package adminapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"net/netip"
	"strconv"

	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

const (
	// Challenge is the WWW-Authenticate of the admin API's 401s.
	Challenge         = `Bearer realm="armgate admin"`
	invalidCredential = "The credential is not a valid admin key or token"
)

// authenticate checks the admin credential and returns the audit actor, or
// writes the refusal.
func (h *handler) authenticate(w http.ResponseWriter, r *http.Request) (string, bool) {
	tok, parsed := token.ParseAuthorization(r.Header.Values("Authorization"))
	if parsed != token.HeaderOK {
		h.refuse(w, r, http.StatusUnauthorized, Challenge, "unauthorized",
			"An admin credential is required: send Authorization: Bearer with the admin key or a token with the admin scope")
		return "", false
	}
	if h.isAdminKey(tok) {
		return storage.ActorAdminKey, true
	}
	cred, ok := h.liveToken(w, r, tok)
	if !ok {
		return "", false
	}
	if !cred.HasScope(token.ScopeAdmin) {
		h.refuse(w, r, http.StatusForbidden,
			Challenge+`, error="insufficient_scope", scope="admin"`,
			"forbidden", "The token lacks the admin scope")
		return "", false
	}
	if h.authenticated != nil {
		h.authenticated(r, cred)
	}
	return storage.ActorToken(cred.TokenID), true
}

// isAdminKey compares tok with every admin key in constant time, without
// stopping at a match, so that timing tells neither which key matched nor
// how much of one.
func (h *handler) isAdminKey(tok string) bool {
	if len(h.adminKeys) == 0 {
		return false
	}
	sum := sha256.Sum256([]byte(tok))
	match := 0
	for _, k := range h.adminKeys {
		match |= subtle.ConstantTimeCompare(sum[:], k[:])
	}
	return match == 1
}

// liveToken verifies tok like the gateway does, or writes 401 or 503.
func (h *handler) liveToken(w http.ResponseWriter, r *http.Request, tok string) (token.Credential, bool) {
	cred, result, err := h.verifier.Verify(r.Context(), tok)
	if err != nil {
		h.unavailable(w, r, err)
		return cred, false
	}
	if result != token.Active {
		// Why a presented token is not live, in the request path's words
		// (the caller holds the token, so this reveals nothing); an unknown
		// token is not told apart from a wrong admin key.
		msg := result.Description()
		if result == token.Unknown {
			msg = invalidCredential
		}
		h.refuse(w, r, http.StatusUnauthorized, Challenge, "unauthorized", msg)
		return cred, false
	}
	return cred, true
}

// FailureLimiter counts refused credentials per client address and blocks
// an address that refuses too many; *limiter.Limiter is one.
type FailureLimiter interface {
	// Blocked reports whether addr is blocked, and for how many more
	// whole seconds.
	Blocked(addr netip.Addr) (retryAfter int, ok bool)
	// Fail counts a refusal from addr.
	Fail(addr netip.Addr)
}

// refuse answers a request whose credential is missing, invalid or lacks
// the scope. Every refusal of a credential passes here, and only refusals
// do: so a blocked client address gets 429 instead of its 401 or 403, and
// a valid credential, which never gets here, is never answered 429. An
// empty challenge sends no WWW-Authenticate (a signature is no bearer
// credential).
func (h *handler) refuse(w http.ResponseWriter, r *http.Request, status int, challenge, code, msg string) {
	if h.limiter != nil {
		if a, ok := h.clientAddr(r); ok {
			if secs, blocked := h.limiter.Blocked(a); blocked {
				w.Header().Set("Retry-After", strconv.Itoa(secs))
				WriteJSON(w, http.StatusTooManyRequests, ErrorBody{Error: "too_many_requests",
					Message: "Too many refused credentials from this address; retry after the time in Retry-After"})
				return
			}
			h.limiter.Fail(a)
		}
	}
	if challenge != "" {
		w.Header().Set("WWW-Authenticate", challenge)
	}
	WriteJSON(w, status, ErrorBody{Error: code, Message: msg})
}
