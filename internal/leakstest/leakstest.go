// Package leakstest signs leak reports the way GitHub secret scanning does,
// for tests: a P-256 key pair made in the test, its keys document in
// GitHub's JSON shape, and the two signature headers.
package leakstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"testing"
)

// Signer is a key pair with its identifier.
type Signer struct {
	ID  string
	Key *ecdsa.PrivateKey
}

// NewSigner makes a fresh P-256 key pair named id.
func NewSigner(t testing.TB, id string) *Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &Signer{ID: id, Key: k}
}

// PEM is the public key as GitHub lists it.
func (s *Signer) PEM(t testing.TB) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&s.Key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// Sign returns the base64 ASN.1 DER signature of body's SHA-256.
func (s *Signer) Sign(t testing.TB, body []byte) string {
	t.Helper()
	d := sha256.Sum256(body)
	sig, err := ecdsa.SignASN1(rand.Reader, s.Key, d[:])
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

// SetHeaders signs body and sets GitHub's two headers on h.
func (s *Signer) SetHeaders(t testing.TB, h http.Header, body []byte) {
	t.Helper()
	h.Set("Github-Public-Key-Identifier", s.ID)
	h.Set("Github-Public-Key-Signature", s.Sign(t, body))
}

// KeysDocument is the keys document listing signers, in GitHub's shape.
func KeysDocument(t testing.TB, signers ...*Signer) []byte {
	t.Helper()
	type key struct {
		KeyIdentifier string `json:"key_identifier"`
		Key           string `json:"key"`
		IsCurrent     bool   `json:"is_current"`
	}
	doc := struct {
		PublicKeys []key `json:"public_keys"`
	}{}
	for i, s := range signers {
		doc.PublicKeys = append(doc.PublicKeys, key{s.ID, s.PEM(t), i == 0})
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Report is a GitHub report body naming tokens found at url.
func Report(t testing.TB, url string, tokens ...string) []byte {
	t.Helper()
	type item struct {
		Token  string `json:"token"`
		Type   string `json:"type"`
		URL    string `json:"url"`
		Source string `json:"source"`
	}
	items := make([]item, len(tokens))
	for i, tok := range tokens {
		items[i] = item{tok, "armgate_api_token", url, "content"}
	}
	b, err := json.Marshal(items)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
