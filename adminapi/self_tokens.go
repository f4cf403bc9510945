package adminapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/armgate/armgate/adminapi/request"
	"github.com/armgate/armgate/storage"
	"github.com/armgate/armgate/token"
)

// The self-service endpoints: a signed-in user's calls on their own
// tokens. They are this API's own handlers, not the admin API's: each
// passes the store the actor user:<id>, and the store checks on the locked
// row that this user may make this change to this token (their own tokens
// only, another user's being not found; re-approval only of their own
// revocations and logouts; rotation only of tokens whose scopes are all
// self-service scopes). What a user may do is therefore decided in one
// place whichever way the call arrives.

// routes builds the self-service mux.
func (s *selfHandler) routes() *http.ServeMux {
	m := http.NewServeMux()
	m.Handle("GET /tokens", s.call(s.listTokens))
	m.Handle("POST /tokens", s.call(s.createToken))
	m.Handle("GET /tokens/{token_id}", s.call(s.getToken))
	m.Handle("POST /tokens/{token_id}/revoke", s.call(s.revokeToken))
	m.Handle("POST /tokens/{token_id}/reapprove", s.call(s.reapproveToken))
	m.Handle("POST /tokens/{token_id}/rotate", s.call(s.rotateToken))
	m.Handle("DELETE /tokens/{token_id}", s.call(s.deleteToken))
	m.Handle("PATCH /tokens/{token_id}", s.call(s.patchToken))
	m.Handle("GET /tokens/{token_id}/usage", s.call(s.tokenUsage, "days"))
	return m
}

// call adapts a self-service endpoint to the mux, as the admin API's calls
// are, after the user check: a user armgate does not know, or a
// deactivated one, may not manage tokens.
func (s *selfHandler) call(fn func(http.ResponseWriter, *http.Request) error, params ...string) http.Handler {
	return endpoint(s.timeout, s.logger, func(w http.ResponseWriter, r *http.Request) error {
		u, err := s.signedIn(r)
		if err != nil {
			return err
		}
		r = r.WithContext(context.WithValue(r.Context(), selfAccountKey{}, u))
		return fn(w, r)
	}, params...)
}

type selfAccountKey struct{}

// errNoAccount is the refusal of a signed-in user who may not manage
// tokens here.
var errNoAccount = &Error{Status: http.StatusForbidden, Code: "forbidden",
	Message: "Your account cannot manage API tokens here; ask an administrator"}

// signedIn returns the signed-in user's account, or 403 when there is none
// or it is deactivated.
func (s *selfHandler) signedIn(r *http.Request) (storage.User, error) {
	id := selfUser(r)
	if ValidateUserID(id) != nil {
		return storage.User{}, errNoAccount // no such id can exist
	}
	u, err := s.store.GetUser(r.Context(), id)
	if errors.Is(err, storage.ErrNotFound) {
		return u, errNoAccount
	} else if err != nil {
		return u, err
	}
	if u.Status != storage.UserActive {
		return u, errNoAccount
	}
	return u, nil
}

// selfActor is the actor of a self-service call: the signed-in user.
func selfActor(r *http.Request) string { return storage.ActorUser(selfUser(r)) }

// changed applies a change's invalidation to the local cache, then answers
// with v, so that the very next request on this instance sees the change.
func (s *selfHandler) changed(w http.ResponseWriter, inv storage.Invalidation, status int, v any) error {
	s.invalidate(inv)
	WriteJSON(w, status, v)
	return nil
}

// selfTokenList is the answer of the self-service GET /tokens: the user,
// the limit, for "3 of 10 tokens", and the tokens.
type selfTokenList struct {
	User      User    `json:"user"`
	MaxTokens int     `json:"max_tokens"`
	Tokens    []Token `json:"tokens"`
}

func (s *selfHandler) listTokens(w http.ResponseWriter, r *http.Request) error {
	u, _ := r.Context().Value(selfAccountKey{}).(storage.User)
	tokens, err := s.store.ListTokens(r.Context(), u.ID)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, selfTokenList{User: UserJSON(u, s.limits.MaxPerUser),
		MaxTokens: s.limits.MaxPerUser, Tokens: tokensJSON(tokens)})
	return nil
}

// ownToken reads token id if it is the signed-in user's; another user's
// token is storage.ErrNotFound, like an unknown one.
func (s *selfHandler) ownToken(r *http.Request, id string) (storage.Token, error) {
	t, err := s.store.GetToken(r.Context(), id)
	if err != nil {
		return storage.Token{}, err
	}
	if t.UserID != selfUser(r) {
		return storage.Token{}, storage.ErrNotFound
	}
	return t, nil
}

// getToken answers one of the user's tokens; another user's token is 404
// like an unknown one, so that ids of other users' tokens do not leak.
func (s *selfHandler) getToken(w http.ResponseWriter, r *http.Request) error {
	id, err := pathTokenID(r)
	if err != nil {
		return err
	}
	t, err := s.ownToken(r, id)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, TokenJSON(t))
	return nil
}

func (s *selfHandler) createToken(w http.ResponseWriter, r *http.Request) error {
	var body request.SelfCreate
	if err := request.Decode(r.Body, &body); err != nil {
		return err
	}
	n, err := body.Token(s.now(), s.limits)
	if err != nil {
		return err
	}
	t, plain, err := s.store.CreateToken(r.Context(), selfActor(r), TokenToStore(selfUser(r), n, s.limits.MaxPerUser))
	if err != nil {
		return err
	}
	// This instance learns of the token before answering, so that its
	// known-token set cannot refuse the token's first request.
	sum := token.Sum(plain)
	return s.changed(w, storage.Invalidation{Created: [][]byte{sum[:]}}, http.StatusCreated, CreatedTokenJSON(t, plain))
}

func (s *selfHandler) revokeToken(w http.ResponseWriter, r *http.Request) error {
	id, body, err := change[request.Revoke](r, pathTokenID)
	if err != nil {
		return err
	}
	reason, err := body.CleanReason()
	if err != nil {
		return err
	}
	t, inv, err := s.store.RevokeToken(r.Context(), selfActor(r), id, reason)
	if err != nil {
		return err
	}
	return s.changed(w, inv, http.StatusOK, TokenJSON(t))
}

func (s *selfHandler) reapproveToken(w http.ResponseWriter, r *http.Request) error {
	id, _, err := change[request.Empty](r, pathTokenID)
	if err != nil {
		return err
	}
	t, inv, err := s.store.ReapproveToken(r.Context(), selfActor(r), id)
	if err != nil {
		return err
	}
	return s.changed(w, inv, http.StatusOK, TokenJSON(t))
}

// rotateToken rotates one of the user's tokens. The new lifetime is checked
// as at create, so it never ends later than max_token_lifetime from now.
func (s *selfHandler) rotateToken(w http.ResponseWriter, r *http.Request) error {
	id, body, err := change[request.Rotate](r, pathTokenID)
	if err != nil {
		return err
	}
	grace, exp, err := body.Rotation(s.now(), s.limits)
	if err != nil {
		return err
	}
	t, plain, inv, err := s.store.RotateToken(r.Context(), selfActor(r), id, grace, exp)
	if err != nil {
		return err
	}
	return s.changed(w, inv, http.StatusCreated, RotatedToken{CreatedToken: CreatedTokenJSON(t, plain), RotatedFrom: id})
}

func (s *selfHandler) deleteToken(w http.ResponseWriter, r *http.Request) error {
	id, err := pathTokenID(r)
	if err != nil {
		return err
	}
	inv, err := s.store.DeleteToken(r.Context(), selfActor(r), id)
	if err != nil {
		return err
	}
	s.invalidate(inv)
	noContent(w)
	return nil
}
