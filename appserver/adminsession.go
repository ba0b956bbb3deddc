package appserver

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/erpupdate/smartsync/internal/atomicfile"
	"github.com/erpupdate/smartsync/syncproto"
)

// An administrator's command logs in once with its password; an update run
// now is given a session token with which the command asks the restarted
// server for the outcome (see syncproto's "Administrator sessions"). The
// tokens' records live in the self-update's state folder, which the server
// after the restart reads too, and hold only a hash of each token: the
// file gives nobody a token to use.

// Session tokens' rules.
const (
	// adminTokenLife is how long a token lives after the update's
	// countdown: the restart and the checks of the new server.
	adminTokenLife = 15 * time.Minute
	// maxAdminTokens bounds the records kept; the oldest go first.
	maxAdminTokens  = 64
	adminTokensFile = "admin_sessions.json"
)

// Errors of a session token. The administrator is told the same for
// each: the session is over, run the command again.
var (
	ErrTokenUnknown = errors.New("appserver: administrator session token not known")
	ErrTokenExpired = errors.New("appserver: administrator session token expired")
	// ErrTokenOp is a token sent with another operation than OpStatus:
	// a token only follows an update, it never starts or cancels one.
	ErrTokenOp = errors.New("appserver: an administrator session token admits the status only")
)

// tokenRecord is the server's memory of one token.
type tokenRecord struct {
	Hash     string    `json:"hash"` // hex SHA-256 of the token
	Session  string    `json:"session"`
	User     string    `json:"user"`
	UpdateID string    `json:"update_id"`
	Expires  time.Time `json:"expires"`
}

// adminTokens keeps the records of the tokens given out, in a file of the
// state folder when there is one, else in memory.
type adminTokens struct {
	mu  sync.Mutex
	mem []tokenRecord // without a state folder
}

func tokenHash(token []byte) string {
	h := sha256.Sum256(token)
	return hex.EncodeToString(h[:])
}

// load reads the records kept in dir ("" for memory).
func (a *adminTokens) load(dir string) ([]tokenRecord, error) {
	if dir == "" {
		return slices.Clone(a.mem), nil
	}
	var recs []tokenRecord
	err := atomicfile.ReadJSON(filepath.Join(dir, adminTokensFile), &recs)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return recs, err
}

func (a *adminTokens) store(dir string, recs []tokenRecord) error {
	if dir == "" {
		a.mem = recs
		return nil
	}
	return atomicfile.WriteJSON(filepath.Join(dir, adminTokensFile), recs, 0o600)
}

// issue makes a token for user's update updateID, valid until expires, and
// records its hash in dir. It returns the token and the session's name.
func (a *adminTokens) issue(dir, user, updateID string, expires, now time.Time) (token []byte, session string, err error) {
	token = make([]byte, syncproto.TokenSize)
	name := make([]byte, 8)
	if _, err := rand.Read(token); err != nil {
		return nil, "", err
	}
	if _, err := rand.Read(name); err != nil {
		return nil, "", err
	}
	session = "s-" + hex.EncodeToString(name)
	a.mu.Lock()
	defer a.mu.Unlock()
	recs, err := a.load(dir)
	if err != nil {
		// An unreadable file holds no token worth keeping.
		recs = nil
	}
	recs = slices.DeleteFunc(recs, func(r tokenRecord) bool { return !now.Before(r.Expires) })
	if len(recs) >= maxAdminTokens {
		recs = recs[len(recs)-maxAdminTokens+1:]
	}
	recs = append(recs, tokenRecord{Hash: tokenHash(token), Session: session, User: user, UpdateID: updateID, Expires: expires})
	if err := a.store(dir, recs); err != nil {
		return nil, "", fmt.Errorf("recording the administrator session: %w", err)
	}
	return token, session, nil
}

// revoke forgets the token of session.
func (a *adminTokens) revoke(dir, session string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	recs, err := a.load(dir)
	if err != nil {
		return err
	}
	return a.store(dir, slices.DeleteFunc(recs, func(r tokenRecord) bool { return r.Session == session }))
}

// revokeAll forgets every token, as when [ADMIN] changes, and returns how
// many there were.
func (a *adminTokens) revokeAll(dir string) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	recs, err := a.load(dir)
	if err == nil && len(recs) == 0 {
		return 0, nil
	}
	return len(recs), a.store(dir, nil)
}

// check returns the record of token for user, or ErrTokenUnknown (also for
// another user's token) or ErrTokenExpired.
func (a *adminTokens) check(dir string, token []byte, user string, now time.Time) (tokenRecord, error) {
	a.mu.Lock()
	recs, err := a.load(dir)
	a.mu.Unlock()
	if err != nil {
		return tokenRecord{}, fmt.Errorf("reading the administrator sessions: %w", err)
	}
	h := []byte(tokenHash(token))
	for _, r := range recs {
		if subtle.ConstantTimeCompare(h, []byte(r.Hash)) != 1 {
			continue
		}
		switch {
		case subtle.ConstantTimeCompare([]byte(user), []byte(r.User)) != 1:
			return tokenRecord{}, ErrTokenUnknown
		case !now.Before(r.Expires):
			return tokenRecord{}, fmt.Errorf("%w at %s", ErrTokenExpired, r.Expires.Format(time.RFC3339))
		}
		return r, nil
	}
	return tokenRecord{}, ErrTokenUnknown
}
