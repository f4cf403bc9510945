// Package ghkeys verifies the signature of GitHub secret scanning's
// reports with GitHub's public keys, which it fetches (or reads from a
// file) and keeps fresh. It is apart from package leaks, which parses the
// reports, so that the report parser and its fuzz target build without
// net/http.
package ghkeys

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"
)

// DefaultGitHubKeysURL is where GitHub publishes the keys that sign its
// secret scanning reports.
const DefaultGitHubKeysURL = "https://api.github.com/meta/public_keys/secret_scanning"

const (
	// RefreshInterval is the least time between two fetches of the keys:
	// an unknown key id makes the source fetch them again, so a stream of
	// made-up ids costs the key server one request a minute at most.
	RefreshInterval = time.Minute
	// MaxKeysAge: keys older than this are fetched again at the next
	// report (a key GitHub withdrew stops being accepted); a failed fetch
	// keeps the old keys.
	MaxKeysAge = time.Hour
	// maxKeysBytes bounds the keys document.
	maxKeysBytes = 1 << 20
	// fetchTimeout bounds one fetch of the keys.
	fetchTimeout = 10 * time.Second
)

// Signature errors. Each is a refusal (401); any other error of Verify means
// the keys could not be had (503, the reporter retries).
var (
	ErrNoSignature  = errors.New("the report carries no Github-Public-Key-Identifier and Github-Public-Key-Signature")
	ErrUnknownKey   = errors.New("the report is signed with an unknown key")
	ErrBadSignature = errors.New("the report's signature does not verify")
)

// IsRefusal reports whether err of Verify refuses the report (401), as
// opposed to the keys being unavailable.
func IsRefusal(err error) bool {
	return errors.Is(err, ErrNoSignature) || errors.Is(err, ErrUnknownKey) || errors.Is(err, ErrBadSignature)
}

// KeySource holds GitHub's secret scanning public keys: fetched on first
// use, again when a report names a key id it does not know (at most once
// per RefreshInterval) and when they are older than MaxKeysAge.
type KeySource struct {
	fetch func(context.Context) ([]byte, error)
	now   func() time.Time

	mu        sync.Mutex
	keys      map[string]*ecdsa.PublicKey
	fetchedAt time.Time // of the keys held
	triedAt   time.Time // of the last fetch, successful or not
	tried     bool
}

// NewKeySource returns a source that reads the keys document with fetch;
// now is its clock (nil: time.Now).
func NewKeySource(fetch func(context.Context) ([]byte, error), now func() time.Time) *KeySource {
	if now == nil {
		now = time.Now
	}
	return &KeySource{fetch: fetch, now: now}
}

// URLKeys returns a source that fetches the keys from url with client
// (nil: a client of its own).
func URLKeys(url string, client *http.Client) *KeySource {
	if client == nil {
		client = &http.Client{Timeout: fetchTimeout}
	}
	return NewKeySource(func(ctx context.Context) ([]byte, error) {
		ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("fetching the secret scanning keys: %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("fetching the secret scanning keys from %s: status %d", url, resp.StatusCode)
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxKeysBytes+1))
		if err != nil {
			return nil, fmt.Errorf("fetching the secret scanning keys: %w", err)
		}
		if len(b) > maxKeysBytes {
			return nil, fmt.Errorf("the secret scanning keys document at %s exceeds %d bytes", url, maxKeysBytes)
		}
		return b, nil
	}, nil)
}

// FileKeys returns a source that reads the keys document from a file, for
// offline installations and tests; the file is read again on the same
// schedule as a URL would be fetched.
func FileKeys(path string) *KeySource {
	return NewKeySource(func(context.Context) ([]byte, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading the secret scanning keys: %w", err)
		}
		return b, nil
	}, nil)
}

// keysDocument is GitHub's JSON shape of the keys.
type keysDocument struct {
	PublicKeys []struct {
		KeyIdentifier string `json:"key_identifier"`
		Key           string `json:"key"`
		IsCurrent     bool   `json:"is_current"`
	} `json:"public_keys"`
}

// ParseKeys reads a keys document in GitHub's shape,
// {"public_keys":[{"key_identifier","key" (PEM),"is_current"}]}, and
// returns its ECDSA P-256 keys by identifier. Every listed key is accepted,
// current or not: GitHub lists a retiring key while reports signed with it
// may still arrive.
func ParseKeys(doc []byte) (map[string]*ecdsa.PublicKey, error) {
	var d keysDocument
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, fmt.Errorf("the secret scanning keys document is not valid JSON: %w", err)
	}
	keys := make(map[string]*ecdsa.PublicKey, len(d.PublicKeys))
	for i, k := range d.PublicKeys {
		if k.KeyIdentifier == "" {
			return nil, fmt.Errorf("secret scanning key #%d has no key_identifier", i+1)
		}
		block, _ := pem.Decode([]byte(k.Key))
		if block == nil {
			return nil, fmt.Errorf("secret scanning key %q is not PEM", k.KeyIdentifier)
		}
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("secret scanning key %q: %w", k.KeyIdentifier, err)
		}
		ec, ok := pub.(*ecdsa.PublicKey)
		if !ok || ec.Curve != elliptic.P256() {
			return nil, fmt.Errorf("secret scanning key %q is not an ECDSA P-256 key", k.KeyIdentifier)
		}
		keys[k.KeyIdentifier] = ec
	}
	if len(keys) == 0 {
		return nil, errors.New("the secret scanning keys document lists no key")
	}
	return keys, nil
}

// Verify checks that sig (base64 of an ASN.1 DER ECDSA signature) is the
// signature of body's SHA-256 by the key keyID. It fetches the keys on
// first use, when keyID is unknown and the last fetch is at least
// RefreshInterval ago, and when the keys are older than MaxKeysAge. A
// refusal is ErrNoSignature, ErrUnknownKey or ErrBadSignature; another
// error means no keys could be had.
func (k *KeySource) Verify(ctx context.Context, keyID, sig string, body []byte) error {
	if keyID == "" || sig == "" {
		return ErrNoSignature
	}
	der, err := base64.StdEncoding.DecodeString(sig)
	if err != nil || len(der) > 128 {
		return ErrBadSignature
	}
	pub, err := k.key(ctx, keyID)
	if err != nil {
		return err
	}
	digest := sha256.Sum256(body)
	if !ecdsa.VerifyASN1(pub, digest[:], der) {
		return ErrBadSignature
	}
	return nil
}

// key returns the key keyID, fetching the keys when the rules of Verify
// say so. Concurrent callers wait for one fetch.
func (k *KeySource) key(ctx context.Context, keyID string) (*ecdsa.PublicKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	pub, known := k.keys[keyID]
	canFetch := !k.tried || now.Sub(k.triedAt) >= RefreshInterval
	stale := k.keys != nil && now.Sub(k.fetchedAt) >= MaxKeysAge
	if canFetch && (!known || stale) {
		k.tried, k.triedAt = true, now
		doc, err := k.fetch(ctx)
		var keys map[string]*ecdsa.PublicKey
		if err == nil {
			keys, err = ParseKeys(doc)
		}
		switch {
		case err == nil:
			k.keys, k.fetchedAt = keys, now
			pub, known = k.keys[keyID]
		case k.keys == nil:
			return nil, err
		}
		// A failed refresh keeps the keys held.
	}
	if k.keys == nil {
		return nil, errors.New("the secret scanning keys are not available yet; the last fetch failed")
	}
	if !known {
		return nil, ErrUnknownKey
	}
	return pub, nil
}
