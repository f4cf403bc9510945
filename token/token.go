// Package token implements the armgate token format: generation, shape and
// checksum validation, hashing and the display hint. It needs neither Caddy nor
// PostgreSQL.
//
// A token is "arm_" + 32 random base62 characters + 6 base62 characters of
// CRC-32 (IEEE) over the first 36 characters, 42 characters in all. The
// checksum lets secret scanners recognise tokens and lets the gateway refuse
// typos without touching the cache or the database.
package token

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"hash/crc32"
)

const (
	// Prefix starts every token.
	Prefix = "arm_"
	// Len is the length of a token in characters.
	Len = len(Prefix) + randomLen + checksumLen

	randomLen   = 32
	checksumLen = 6
	hintLen     = 8
	alphabet    = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

// Hash is the SHA-256 digest of a whole token; it is what the database stores
// and what the cache is keyed by.
type Hash [sha256.Size]byte

// ErrMalformed is returned for strings that are not well-formed tokens.
var ErrMalformed = errors.New("malformed token")

// ErrChecksum is returned for well-shaped tokens whose checksum does not match.
var ErrChecksum = errors.New("token checksum mismatch")

// Generate returns a new random token.
func Generate() (string, error) {
	var b [Len]byte
	copy(b[:], Prefix)
	// Rejection sampling: 256 - 256%62 = 248, so bytes >= 248 are dropped to
	// keep every character equally likely.
	var buf [64]byte
	n := len(Prefix)
	for n < len(Prefix)+randomLen {
		if _, err := rand.Read(buf[:]); err != nil {
			return "", err
		}
		for _, c := range buf {
			if c >= 248 {
				continue
			}
			b[n] = alphabet[c%62]
			n++
			if n == len(Prefix)+randomLen {
				break
			}
		}
	}
	putChecksum(b[len(Prefix)+randomLen:], crc32.ChecksumIEEE(b[:len(Prefix)+randomLen]))
	return string(b[:]), nil
}

// putChecksum writes sum in base62, most significant digit first, left-padded
// with '0' to len(dst) characters.
func putChecksum(dst []byte, sum uint32) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = alphabet[sum%62]
		sum /= 62
	}
}

// Check reports whether s has the shape of a token and a matching checksum.
// It does not allocate.
func Check(s string) error {
	if len(s) != Len || s[:len(Prefix)] != Prefix {
		return ErrMalformed
	}
	for i := len(Prefix); i < Len; i++ {
		if !isBase62(s[i]) {
			return ErrMalformed
		}
	}
	var want [checksumLen]byte
	putChecksum(want[:], crc32IEEEString(s[:len(Prefix)+randomLen]))
	if string(want[:]) != s[len(Prefix)+randomLen:] {
		return ErrChecksum
	}
	return nil
}

// ieeeTable drives crc32IEEEString. crc32.ChecksumIEEE would make its
// argument escape (it calls through a function variable), costing the hot
// path an allocation per Check.
var ieeeTable = crc32.MakeTable(crc32.IEEE)

// crc32IEEEString is crc32.ChecksumIEEE([]byte(s)) without allocating.
func crc32IEEEString(s string) uint32 {
	crc := ^uint32(0)
	for i := 0; i < len(s); i++ {
		crc = ieeeTable[byte(crc)^s[i]] ^ crc>>8
	}
	return ^crc
}

func isBase62(c byte) bool {
	return '0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z'
}

// Sum returns the SHA-256 digest of the token s. For strings of token
// length it hashes a stack copy, so the hot path does not allocate.
func Sum(s string) Hash {
	if len(s) == Len {
		var b [Len]byte
		copy(b[:], s)
		return sha256.Sum256(b[:])
	}
	return sha256.Sum256([]byte(s))
}

// Hint returns the display hint stored beside the hash: the first eight
// characters followed by an ellipsis.
func Hint(s string) string {
	if len(s) > hintLen {
		s = s[:hintLen]
	}
	return s + "…"
}
