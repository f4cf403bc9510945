package storage

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

// scanTokenHashesQuery reads the first eight bytes of every token's hash:
// every row is a token that exists (a deleted token is a deleted row),
// expired and revoked ones included, since they are answered from the
// database with their own message. The prefixes come concatenated in one
// value (8 MB for 1M tokens): that saves the per-row cost on both sides and
// is faster end to end than a row per token, or than groups of them (which
// PostgreSQL sorts or hashes first).
const scanTokenHashesQuery = `SELECT string_agg(substring(hash from 1 for 8), ''::bytea) FROM armgate.tokens`

// ScanTokenHashes calls fn with the hash prefix of every token that exists:
// the first eight bytes of its SHA-256, big-endian (knownset.Prefix). One
// query, so one snapshot.
func (s *Store) ScanTokenHashes(ctx context.Context, fn func(prefix uint64)) error {
	// The binary result format makes a bytea arrive as its raw bytes.
	rows, err := s.pool.Query(ctx, scanTokenHashesQuery, pgx.QueryResultFormats{pgx.BinaryFormatCode})
	if err != nil {
		return fmt.Errorf("scan token hashes: %w", err)
	}
	defer rows.Close()
	var buf []byte
	for rows.Next() {
		v := rows.RawValues()[0]
		if v == nil {
			continue // no tokens: string_agg is NULL
		}
		if rows.FieldDescriptions()[0].Format == pgx.TextFormatCode {
			// The simple protocol (default_query_exec_mode=simple_protocol
			// in the DSN, e.g. for PgBouncer) answers in text: \x and hex.
			if len(v) < 2 || v[0] != '\\' || v[1] != 'x' {
				return fmt.Errorf("scan token hashes: unexpected text value")
			}
			buf = slices.Grow(buf[:0], len(v)/2)[:(len(v)-2)/2]
			if _, err := hex.Decode(buf, v[2:]); err != nil {
				return fmt.Errorf("scan token hashes: %w", err)
			}
			v = buf
		}
		if len(v)%8 != 0 {
			return fmt.Errorf("scan token hashes: %d bytes of hash prefixes", len(v))
		}
		for ; len(v) > 0; v = v[8:] {
			fn(binary.BigEndian.Uint64(v))
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("scan token hashes: %w", err)
	}
	return nil
}

// bounded keeps a notification under PostgreSQL's payload limit (8000
// bytes): beyond maxNotifyHashes hashes in all, the created and deleted
// ones give way to Rescan, then the invalidated ones to All.
func (inv Invalidation) bounded() Invalidation {
	if len(inv.Created)+len(inv.Deleted) > maxNotifyHashes {
		inv.Created, inv.Deleted, inv.Rescan = nil, nil, true
	}
	if len(inv.Hashes)+len(inv.Created)+len(inv.Deleted) > maxNotifyHashes {
		inv.Hashes, inv.All = nil, true
	}
	return inv
}

func (inv Invalidation) empty() bool {
	return len(inv.Hashes) == 0 && !inv.All && len(inv.Created) == 0 && len(inv.Deleted) == 0 && !inv.Rescan
}
