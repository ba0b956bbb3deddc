package smartclient

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/erpupdate/smartsync/internal/atomicfile"
	"github.com/erpupdate/smartsync/smartclient/internal/install"
	"github.com/erpupdate/smartsync/smartclient/internal/pending"
	"github.com/erpupdate/smartsync/syncproto"
)

// ClientIDFile holds the client's id, made once per install folder: 32
// hexadecimal digits and a newline. It is a file of its own, not a field
// of the state, so that it outlives a first sync that did not happen
// (everything else of .smartclient goes then: see Sync) and so that the
// server knows the workstation by one id from its first hello on.
const ClientIDFile = install.MetaDir + "/client-id"

// idLen is the length of a client id: 128 random bits in hexadecimal.
const idLen = 32

// newClientID returns a new random client id.
func newClientID() string {
	b := make([]byte, idLen/2)
	rand.Read(b) // never fails (crypto/rand panics rather)
	return hex.EncodeToString(b)
}

// validID reports whether id is a client id this client would make.
func validID(id string) bool {
	if len(id) != idLen {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil && strings.ToLower(id) == id
}

// clientID returns the install's id: the one in ClientIDFile; else the
// one in the state of an install made before that file existed (legacy),
// else a new one. Unless store is false (a check changes nothing), an id
// that was not in the file is written there, before the first session,
// so that a declined or failed first sync keeps it.
func clientID(root *os.Root, dir, legacy string, store bool) (string, error) {
	data, err := root.ReadFile(ClientIDFile)
	if err == nil {
		if id := strings.TrimSpace(string(data)); validID(id) {
			return id, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("reading the client id: %w", err)
	}
	// Missing, or not an id (torn by hand, or garbage): a new one.
	id := legacy
	if !validID(id) {
		id = newClientID()
	}
	if store {
		if err := storeClientID(root, dir, id); err != nil {
			return "", err
		}
	}
	return id, nil
}

// readClientID returns the id kept in ClientIDFile, "" when there is
// none (or not a valid one).
func readClientID(root *os.Root) string {
	data, err := root.ReadFile(ClientIDFile)
	if id := strings.TrimSpace(string(data)); err == nil && validID(id) {
		return id
	}
	return ""
}

// storeClientID writes id to ClientIDFile atomically.
func storeClientID(root *os.Root, dir, id string) error {
	if err := root.Mkdir(install.MetaDir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("storing the client id: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, filepath.FromSlash(ClientIDFile)), []byte(id+"\n"), 0o644); err != nil {
		return fmt.Errorf("storing the client id: %w", err)
	}
	return nil
}

// renewClientID makes, stores and returns a new id, as a server that saw
// the old one from another host asks (syncproto.WelcomeRenewID): two
// workstations cloned from one disk image share their id until then.
func renewClientID(root *os.Root, dir, old string, log *slog.Logger) (string, error) {
	id := newClientID()
	if err := storeClientID(root, dir, id); err != nil {
		return old, err
	}
	log.Info("the server saw this client's id from another host (a cloned install?); made a new one, used from the next session on",
		"old_id", old, "new_id", id)
	return id, nil
}

// hostName returns what the hello names the workstation by: o.Host if
// set (tests), else the OS's host name.
func hostName(o Options) string {
	if o.Host != "" {
		return shortString(o.Host)
	}
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	return shortString(h)
}

// userName returns the OS user running the client, "" if unknown.
func userName(o Options) string {
	if o.User != "" {
		return shortString(o.User)
	}
	u, err := user.Current()
	if err != nil {
		return ""
	}
	return shortString(u.Username)
}

// shortString makes s a valid short string of the protocol: valid UTF-8
// of at most syncproto.MaxShortString bytes, cut at a character.
func shortString(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	for len(s) > syncproto.MaxShortString {
		_, n := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-n]
	}
	return s
}

// renewID makes the client a new id when the server's welcome asks for
// one. A failure to store it is logged: the sync goes on with the old id,
// and the server asks again next time. A check changes nothing: the next
// sync renews it.
func (a *attempt) renewID() {
	if a.w.Flags&syncproto.WelcomeRenewID == 0 || a.o.CheckOnly {
		return
	}
	id, err := renewClientID(a.root.Root, a.o.Dir, a.st.ClientID, a.o.Log)
	if err != nil {
		a.o.Log.Warn("could not store a new client id", "err", err)
		return
	}
	a.st.ClientID = id
}

// hasMeta reports whether the install holds the client's bookkeeping:
// .smartclient with anything in it but the id, and the lock held now
// (its file where the OS cannot lock the folder itself, Windows, and its
// holder's note, written once .smartclient exists, which the id makes it
// do from the second attempt on).
func hasMeta(root *install.Disk) bool {
	entries, err := root.ReadDir(install.MetaDir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if n := e.Name(); n != path.Base(ClientIDFile) && n != path.Base(install.HolderFile) && n != path.Base(install.LockFile) && n != pending.Name {
			return true
		}
	}
	return false
}

// forgetAllButID removes what a first sync that did not happen wrote in
// .smartclient, all but the client's id and the reports kept for the
// server (a workstation whose first sync could not reach it reports at
// its next connection); .smartclient itself goes if it is empty then (a
// check stores no id).
func forgetAllButID(root *install.Disk) {
	entries, _ := root.ReadDir(install.MetaDir)
	for _, e := range entries {
		if n := e.Name(); n != path.Base(ClientIDFile) && n != pending.Name {
			root.RemoveAll(install.MetaDir + "/" + e.Name())
		}
	}
	root.Remove(install.MetaDir) // only if empty
}
