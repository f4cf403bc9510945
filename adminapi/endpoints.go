package adminapi

import (
	"errors"
	"net/http"

	"github.com/armgate/armgate/adminapi/request"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

// The endpoints of the admin API. Each returns an error for
// answerError to map. A state change applies its invalidation
// to the local cache before it answers, so the very next request on this
// instance already sees it.

// change reads a change's target from the path (with pathID, e.g.
// pathUserID) and its JSON body.
func change[B any](r *http.Request, pathID func(*http.Request) (string, error)) (id string, body B, err error) {
	if id, err = pathID(r); err != nil {
		return "", body, err
	}
	err = request.Decode(r.Body, &body)
	return id, body, err
}

// changed applies a change's invalidation to the local cache, then answers
// with v.
func (h *handler) changed(w http.ResponseWriter, inv storage.Invalidation, status int, v any) error {
	h.invalidate(inv)
	WriteJSON(w, status, v)
	return nil
}

func (h *handler) putUser(w http.ResponseWriter, r *http.Request) error {
	id, body, err := change[request.User](r, pathUserID)
	if err != nil {
		return err
	}
	patch, err := body.Patch()
	if err != nil {
		return err
	}
	limit, err := body.UserRateLimit()
	if err != nil {
		return err
	}
	u, created, err := h.store.UpsertUser(r.Context(), actor(r), id, PatchToStore(patch))
	if err != nil {
		return err
	}
	if limit != nil {
		if u, err = h.setUserRateLimit(r, id, *limit); err != nil {
			return err
		}
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	WriteJSON(w, status, h.userJSON(u))
	return nil
}

func (h *handler) getUser(w http.ResponseWriter, r *http.Request) error {
	id, err := pathUserID(r)
	if err != nil {
		return err
	}
	u, err := h.store.GetUser(r.Context(), id)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, h.userJSON(u))
	return nil
}

func (h *handler) listUsers(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	status, err := ParseUserStatus(q.Get("status"))
	if err != nil {
		return err
	}
	limit, err := ParseLimit(q)
	if err != nil {
		return err
	}
	after, err := DecodeCursor(q.Get("cursor"))
	if err != nil {
		return err
	}
	users, more, err := h.store.ListUsers(r.Context(), status, after, limit)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, UsersPageJSON(users, more, h.limits.MaxPerUser))
	return nil
}

func (h *handler) deactivateUser(w http.ResponseWriter, r *http.Request) error {
	return h.setUserActive(w, r, false)
}

func (h *handler) reactivateUser(w http.ResponseWriter, r *http.Request) error {
	return h.setUserActive(w, r, true)
}

func (h *handler) setUserActive(w http.ResponseWriter, r *http.Request, active bool) error {
	id, _, err := change[request.Empty](r, pathUserID)
	if err != nil {
		return err
	}
	u, inv, err := h.store.SetUserActive(r.Context(), actor(r), id, active)
	if err != nil {
		return err
	}
	return h.changed(w, inv, http.StatusOK, h.userJSON(u))
}

func (h *handler) createToken(w http.ResponseWriter, r *http.Request) error {
	userID, body, err := change[request.CreateToken](r, pathUserID)
	if err != nil {
		return err
	}
	n, err := body.Token(h.now(), h.limits)
	if err != nil {
		return err
	}
	t, plain, err := h.store.CreateToken(r.Context(), actor(r), TokenToStore(userID, n, h.limits.MaxPerUser))
	if err != nil {
		return err
	}
	return h.created(w, t, plain)
}

// created answers 201 with the new token, once this instance knows it: the
// known-token set must not refuse it before the notification arrives.
func (h *handler) created(w http.ResponseWriter, t storage.Token, plain string) error {
	sum := token.Sum(plain)
	return h.changed(w, storage.Invalidation{Created: [][]byte{sum[:]}}, http.StatusCreated, CreatedTokenJSON(t, plain))
}

func (h *handler) listTokens(w http.ResponseWriter, r *http.Request) error {
	userID, err := pathUserID(r)
	if err != nil {
		return err
	}
	tokens, err := h.store.ListTokens(r.Context(), userID)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, TokenListJSON(tokens))
	return nil
}

func (h *handler) getToken(w http.ResponseWriter, r *http.Request) error {
	id, err := pathTokenID(r)
	if err != nil {
		return err
	}
	t, err := h.store.GetToken(r.Context(), id)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, TokenJSON(t))
	return nil
}

func (h *handler) revokeToken(w http.ResponseWriter, r *http.Request) error {
	id, body, err := change[request.Revoke](r, pathTokenID)
	if err != nil {
		return err
	}
	reason, err := body.CleanReason()
	if err != nil {
		return err
	}
	t, inv, err := h.store.RevokeToken(r.Context(), actor(r), id, reason)
	if err != nil {
		return err
	}
	return h.changed(w, inv, http.StatusOK, TokenJSON(t))
}

func (h *handler) reapproveToken(w http.ResponseWriter, r *http.Request) error {
	id, _, err := change[request.Empty](r, pathTokenID)
	if err != nil {
		return err
	}
	t, inv, err := h.store.ReapproveToken(r.Context(), actor(r), id)
	if err != nil {
		return err
	}
	return h.changed(w, inv, http.StatusOK, TokenJSON(t))
}

func (h *handler) deleteToken(w http.ResponseWriter, r *http.Request) error {
	id, err := pathTokenID(r)
	if err != nil {
		return err
	}
	inv, err := h.store.DeleteToken(r.Context(), actor(r), id)
	if err != nil {
		return err
	}
	h.invalidate(inv)
	noContent(w)
	return nil
}

// introspect answers RFC 7662 from the store, with the gateway's status
// rules, so that it is active exactly when the gateway would let the token
// through (scope aside: the scopes are in the answer). It reads the store
// rather than the verifier because the verifier records each check as a
// use: looking at a token must not change its last_used_at.
func (h *handler) introspect(w http.ResponseWriter, r *http.Request) error {
	tok, err := parseIntrospection(r)
	if err != nil {
		return err
	}
	if token.Check(tok) != nil {
		// Malformed or a typo: no query can find it.
		WriteJSON(w, http.StatusOK, introspection{Active: false})
		return nil
	}
	cred, err := h.store.LookupCredential(r.Context(), token.Sum(tok))
	if errors.Is(err, storage.ErrNotFound) {
		WriteJSON(w, http.StatusOK, introspection{Active: false})
		return nil
	} else if err != nil {
		return err // 503: "inactive" would be a guess
	}
	if cred.Status(h.now()) != token.Active {
		WriteJSON(w, http.StatusOK, introspection{Active: false})
		return nil
	}
	WriteJSON(w, http.StatusOK, introspectionOf(cred))
	return nil
}

func (h *handler) audit(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	userID := q.Get("user_id")
	if userID != "" {
		if err := ValidateUserID(userID); err != nil {
			return badRequest("invalid user_id: %v", err)
		}
	}
	limit, err := ParseLimit(q)
	if err != nil {
		return err
	}
	events, err := h.store.Audit(r.Context(), userID, limit)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, auditListJSON(events))
	return nil
}

// logout revokes the caller's own token (reason "logout"); it needs no
// admin rights, only a token of any scope that exists, in any state: a
// revoked one stays revoked, an expired one records revoked_at, and a token
// of a deactivated user stays revoked after the user's reactivation. So it
// reads the store, not the gateway's verifier, which refuses tokens that are
// not live. An unknown or malformed token is 401.
func (h *handler) logout(w http.ResponseWriter, r *http.Request) error {
	tok, parsed := token.ParseAuthorization(r.Header.Values("Authorization"))
	if parsed != token.HeaderOK {
		h.refuse(w, r, http.StatusUnauthorized, Challenge, "unauthorized",
			"Logout needs the token to revoke: send it as Authorization: Bearer")
		return nil
	}
	if token.Check(tok) != nil {
		// Malformed or a typo (the admin key too): no query can find it.
		h.refuse(w, r, http.StatusUnauthorized, Challenge, "unauthorized", invalidCredential)
		return nil
	}
	cred, err := h.store.LookupCredential(r.Context(), token.Sum(tok))
	if errors.Is(err, storage.ErrNotFound) {
		h.refuse(w, r, http.StatusUnauthorized, Challenge, "unauthorized", invalidCredential)
		return nil
	} else if err != nil {
		return err
	}
	_, inv, err := h.store.Logout(r.Context(), cred.TokenID)
	if errors.Is(err, storage.ErrNotFound) {
		// Deleted since the lookup.
		h.refuse(w, r, http.StatusUnauthorized, Challenge, "unauthorized", invalidCredential)
		return nil
	} else if err != nil {
		return err
	}
	h.invalidate(inv)
	noContent(w)
	return nil
}

func noContent(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// userJSON is u as the API shows it, with the configured token limit.
func (h *handler) userJSON(u storage.User) User { return UserJSON(u, h.limits.MaxPerUser) }
