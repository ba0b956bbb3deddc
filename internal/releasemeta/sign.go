package releasemeta

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"time"
)

// Sign signs st with priv and returns the signed file, carrying chain
// (see NewChain and Rotate; nil for none).
func Sign(st Statement, chain []SignedKeyList, priv ed25519.PrivateKey) ([]byte, error) {
	st.Format = Format
	st.Published = st.Published.UTC().Truncate(time.Second)
	st.Expires = st.Expires.UTC().Truncate(time.Second)
	f := &File{Format: Format, Chain: chain, Statement: st,
		Signatures: []Signature{sign(priv, statementMessage(st))}}
	if err := f.check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	if n := len(chain); n > 0 && !chain[n-1].List.Has(PublicKey(priv.Public().(ed25519.PublicKey)).ID()) {
		return nil, fmt.Errorf("%w: key %s is not in the chain's last key list (version %d: %s)",
			ErrUnknownKey, PublicKey(priv.Public().(ed25519.PublicKey)).ID(), chain[n-1].List.Version, chain[n-1].List.IDs())
	}
	b := f.Encode()
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFormat, len(b), MaxSize)
	}
	return b, nil
}

func sign(priv ed25519.PrivateKey, msg []byte) Signature {
	return Signature{Key: PublicKey(priv.Public().(ed25519.PublicKey)).ID(), Sig: ed25519.Sign(priv, msg)}
}

// NewChain starts a chain: key list version 1 of priv's key, signed by
// itself, so that a client can trust it on first use.
func NewChain(priv ed25519.PrivateKey) []SignedKeyList {
	l := KeyList{Version: 1, Keys: []PublicKey{PublicKey(priv.Public().(ed25519.PublicKey))}}
	return []SignedKeyList{{List: l, Signatures: []Signature{sign(priv, keyListMessage(l))}}}
}

// Rotate appends to chain the next key list, of keys, signed by priv,
// which must be a key of the chain's last list.
func Rotate(chain []SignedKeyList, priv ed25519.PrivateKey, keys []PublicKey) ([]SignedKeyList, error) {
	if len(chain) == 0 {
		return nil, fmt.Errorf("%w: no chain to extend", ErrChain)
	}
	last := chain[len(chain)-1].List
	id := PublicKey(priv.Public().(ed25519.PublicKey)).ID()
	if !last.Has(id) {
		return nil, fmt.Errorf("%w: key %s is not in the current key list (version %d: %s)", ErrUnknownKey, id, last.Version, last.IDs())
	}
	l := KeyList{Version: last.Version + 1, Keys: keys}
	if err := l.check(); err != nil {
		return nil, fmt.Errorf("%w: key list version %d: %w", ErrFormat, l.Version, err)
	}
	if len(chain) >= MaxChain {
		return nil, fmt.Errorf("%w: the chain holds %d key lists already, limit %d", ErrFormat, len(chain), MaxChain)
	}
	return append(chain[:len(chain):len(chain)], SignedKeyList{List: l, Signatures: []Signature{sign(priv, keyListMessage(l))}}), nil
}

// chainFile is the publisher's chain file: one line of canonical JSON.
type chainFile struct {
	Format int             `json:"format"`
	Chain  []SignedKeyList `json:"chain"`
}

// EncodeChain returns the bytes of a chain file.
func EncodeChain(chain []SignedKeyList) []byte {
	return append(canonical(chainFile{Format: Format, Chain: chain}), '\n')
}

// DecodeChain parses a chain file as strictly as Decode a signed file,
// and checks that each list is signed by a key of the one before it (the
// first by one of its own).
func DecodeChain(b []byte) ([]SignedKeyList, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%w: chain file of %d bytes, limit %d", ErrFormat, len(b), MaxSize)
	}
	body, ok := bytes.CutSuffix(b, []byte("\n"))
	if !ok {
		return nil, fmt.Errorf("%w: no final newline", ErrFormat)
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	var c chainFile
	if err := d.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	if d.More() || c.Format != Format || len(c.Chain) == 0 || len(c.Chain) > MaxChain || !bytes.Equal(canonical(c), body) {
		return nil, fmt.Errorf("%w: not a canonical chain file of format %d with 1 to %d key lists", ErrFormat, Format, MaxChain)
	}
	prev := c.Chain[0].List
	for i, l := range c.Chain {
		if err := l.List.check(); err != nil {
			return nil, fmt.Errorf("%w: key list %d: %w", ErrFormat, i, err)
		}
		if err := checkSigs(l.Signatures); err != nil {
			return nil, fmt.Errorf("%w: key list %d: %w", ErrFormat, i, err)
		}
		if want := uint64(i + 1); l.List.Version != want {
			return nil, fmt.Errorf("%w: key list %d has version %d, want %d", ErrChain, i, l.List.Version, want)
		}
		if _, err := verifySigs(prev, l.Signatures, keyListMessage(l.List), fmt.Sprintf("key list version %d", l.List.Version)); err != nil {
			return nil, err
		}
		prev = l.List
	}
	return c.Chain, nil
}
