package appserver

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/internal/atomicfile"
	"github.com/erpupdate/smartsync/syncproto"
)

// forgetFailures clears the login throttle, as if its delay had passed.
func forgetFailures(ts *testServer) {
	ts.srv.logins.Forget()
}

// TestAdminTamperedField is the attack of a machine on the way that
// changes one field of an administrator's request and passes the sealed
// password on as it was: the server refuses it (CodeDenied, "changed on
// the way") and schedules nothing. The untouched request is accepted,
// so that the refusals are the seal's doing.
func TestAdminTamperedField(t *testing.T) {
	ts, _ := selfUpdateServer(t, "7.00.240501A")
	at := time.Now().Add(2 * time.Hour).Unix()
	base := syncproto.Admin{User: "admin", Op: syncproto.OpUpdate, Source: "/srv/releases/appserver-7.01.tar.gz",
		Countdown: 120, At: at, Notify: "admin@example.com"}
	scheduled := filepath.Join(ts.srv.upd.dir, scheduledFile)
	for _, tc := range []struct {
		name   string
		tamper func(a *syncproto.Admin)
	}{
		{"user", func(a *syncproto.Admin) { a.User = "root" }},
		{"op", func(a *syncproto.Admin) { a.Op = syncproto.OpCancel }},
		{"source", func(a *syncproto.Admin) { a.Source = "https://attacker.example/appserver.tar.gz" }},
		{"countdown", func(a *syncproto.Admin) { a.Countdown = 60 }},
		{"at", func(a *syncproto.Admin) { a.At = time.Now().Add(time.Hour).Unix() }},
		{"notify", func(a *syncproto.Admin) { a.Notify = "mallory@example.com" }},
		{"flags", func(a *syncproto.Admin) { a.Flags |= syncproto.AdminAllowDowngrade }},
		{"token flag", func(a *syncproto.Admin) { a.Flags |= syncproto.AdminToken }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forgetFailures(ts)
			res := adminExchange(t, ts.addr, []byte("correct horse"), base, tc.tamper, nil)
			wantCode(t, res.err, syncproto.CodeDenied, "changed on the way")
			if st := ts.srv.upd.status(); st.State != syncproto.StateNone {
				t.Errorf("after a tampered request the server's update is %v (%s)", st.State, st.Source)
			}
			if _, err := os.Stat(scheduled); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a tampered request left %s: %v", scheduled, err)
			}
		})
	}
	if strings.Contains(ts.logs.String(), "self-update requested") {
		t.Error("a tampered request was logged as requested")
	}
	forgetFailures(ts)
	res := adminExchange(t, ts.addr, []byte("correct horse"), base, nil, nil)
	if res.err != nil || len(res.statuses) != 1 || res.statuses[0].State != syncproto.StateScheduled || res.statuses[0].When != at {
		t.Fatalf("the untouched request: %+v", res)
	}
	if res.session != nil {
		t.Errorf("a scheduled update got a session token: %+v", res.session)
	}
	cancel := adminSession(t, ts.addr, "correct horse", syncproto.Admin{Op: syncproto.OpCancel}, nil)
	if cancel.err != nil || cancel.statuses[0].State != syncproto.StateCancelled {
		t.Fatalf("cancel: %+v", cancel)
	}
}

// TestAdminSessionToken follows a command's login: an update run now
// gets a sealed token bound to the update, kept by the server only as a
// hash in its state folder; the token asks the status (its answer naming
// the session) and nothing else; a wrong, foreign or expired token is
// refused, and its failures are throttled like a password's.
func TestAdminSessionToken(t *testing.T) {
	t.Setenv(TestShortCountdownEnv, "1")
	ts, _ := selfUpdateServer(t, "7.00.240501A")
	src := makeRelease(t, t.TempDir(), "7.01.250101A", map[string]string{serverProgram: "#!/bin/sh\n"}, vendorKey)
	start := time.Now()
	res := adminSession(t, ts.addr, "correct horse", syncproto.Admin{Op: syncproto.OpUpdate, Source: src, Countdown: 300},
		func(r adminResult) bool { return len(r.statuses) > 0 })
	if res.err != nil || res.session == nil || len(res.statuses) != 1 {
		t.Fatalf("update request: %+v", res)
	}
	id := res.statuses[0].ID
	sess := *res.session
	if sess.UpdateID != id || !strings.HasPrefix(sess.Session, "s-") || len(res.token) != syncproto.TokenSize {
		t.Fatalf("session %+v, token of %d bytes, for update %s", sess, len(res.token), id)
	}
	if exp := time.Unix(sess.Expires, 0); exp.Before(start.Add(300*time.Second+adminTokenLife-time.Second)) ||
		exp.After(time.Now().Add(300*time.Second+adminTokenLife)) {
		t.Errorf("the token expires at %v, want the countdown and %v from now", exp, adminTokenLife)
	}
	t.Cleanup(func() {
		forgetFailures(ts)
		adminSession(t, ts.addr, "correct horse", syncproto.Admin{Op: syncproto.OpCancel}, nil)
	})

	// The state folder holds the hash, never the token.
	file := filepath.Join(ts.srv.upd.dir, adminTokensFile)
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, res.token) || bytes.Contains(data, []byte(hex.EncodeToString(res.token))) || !bytes.Contains(data, []byte(tokenHash(res.token))) {
		t.Errorf("%s holds the token, or not its hash:\n%s", file, data)
	}
	if fi, err := os.Stat(file); err != nil || runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: %v, %v; want mode 0600", file, fi.Mode(), err)
	}
	// What another server process reading the same folder knows.
	var fresh adminTokens
	if rec, err := fresh.check(ts.srv.upd.dir, res.token, "admin", time.Now()); err != nil || rec.Session != sess.Session || rec.UpdateID != id {
		t.Errorf("a server reading the state folder anew: %+v, %v", rec, err)
	}

	poll := adminExchange(t, ts.addr, res.token, syncproto.Admin{Op: syncproto.OpStatus, Flags: syncproto.AdminToken}, nil, nil)
	if poll.err != nil || len(poll.statuses) != 1 || poll.statuses[0].ID != id || poll.statuses[0].Session != sess.Session {
		t.Fatalf("status with the token: %+v", poll)
	}
	if withPassword := adminSession(t, ts.addr, "correct horse", syncproto.Admin{Op: syncproto.OpStatus}, nil); withPassword.err != nil ||
		withPassword.statuses[0].Session != "" {
		t.Errorf("a status asked with the password names a session: %+v", withPassword)
	}

	other := bytes.Repeat([]byte{1}, syncproto.TokenSize)
	for _, tc := range []struct {
		name   string
		secret []byte
		req    syncproto.Admin
		setup  func(t *testing.T)
	}{
		{"unknown token", other, syncproto.Admin{Op: syncproto.OpStatus}, nil},
		{"another user's token", res.token, syncproto.Admin{User: "root", Op: syncproto.OpStatus}, nil},
		{"token to cancel", res.token, syncproto.Admin{Op: syncproto.OpCancel}, nil},
		{"token to update", res.token, syncproto.Admin{Op: syncproto.OpUpdate, Source: src, Countdown: 60}, nil},
		{"expired token", res.token, syncproto.Admin{Op: syncproto.OpStatus}, func(t *testing.T) {
			var recs []tokenRecord
			if err := atomicfile.ReadJSON(file, &recs); err != nil {
				t.Fatal(err)
			}
			for i := range recs {
				recs[i].Expires = time.Now().Add(-time.Second)
			}
			if err := atomicfile.WriteJSON(file, recs, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forgetFailures(ts)
			if tc.setup != nil {
				tc.setup(t)
			}
			tc.req.Flags |= syncproto.AdminToken
			r := adminExchange(t, ts.addr, tc.secret, tc.req, nil, nil)
			wantCode(t, r.err, syncproto.CodeDenied, "session has expired or is not known to this server; run the command again")
			if st := ts.srv.upd.status(); st.State != syncproto.StateCountdown || st.ID != id {
				t.Errorf("after a refused token the update is %v (%s)", st.State, st.ID)
			}
		})
	}

	// Token failures count with the passwords': after two, even a right
	// password is refused unchecked for a while.
	forgetFailures(ts)
	for range 2 {
		adminExchange(t, ts.addr, other, syncproto.Admin{Op: syncproto.OpStatus, Flags: syncproto.AdminToken}, nil, nil)
	}
	r := adminSession(t, ts.addr, "correct horse", syncproto.Admin{Op: syncproto.OpStatus}, nil)
	wantCode(t, r.err, syncproto.CodeDenied, "too many failed logins")
}

// TestAdminTokensKept: the store of tokens drops expired records and
// bounds the rest; a revoked token is refused.
func TestAdminTokensKept(t *testing.T) {
	for _, dir := range []string{"", t.TempDir()} {
		var a adminTokens
		now := time.Now()
		old, _, err := a.issue(dir, "admin", "u-1", now.Add(time.Minute), now)
		if err != nil {
			t.Fatal(err)
		}
		later := now.Add(2 * time.Minute)
		var last []byte
		var lastName string
		for range maxAdminTokens + 3 {
			if last, lastName, err = a.issue(dir, "admin", "u-2", later.Add(time.Hour), later); err != nil {
				t.Fatal(err)
			}
		}
		recs, _ := a.load(dir)
		if len(recs) != maxAdminTokens {
			t.Errorf("dir %q: %d records kept, want %d", dir, len(recs), maxAdminTokens)
		}
		if _, err := a.check(dir, old, "admin", now); !errors.Is(err, ErrTokenUnknown) {
			t.Errorf("dir %q: an expired record was kept: %v", dir, err)
		}
		if _, err := a.check(dir, last, "admin", later); err != nil {
			t.Errorf("dir %q: the last token: %v", dir, err)
		}
		if _, err := a.check(dir, last, "admin", later.Add(time.Hour)); !errors.Is(err, ErrTokenExpired) {
			t.Errorf("dir %q: at its expiry the token gave %v", dir, err)
		}
		if err := a.revoke(dir, lastName); err != nil {
			t.Fatal(err)
		}
		if _, err := a.check(dir, last, "admin", later); !errors.Is(err, ErrTokenUnknown) {
			t.Errorf("dir %q: a revoked token gave %v", dir, err)
		}
	}
}

// TestAdminSessionNotRecorded: a server that cannot record the session
// token refuses the update it could not follow, rather than start one
// whose outcome the command could only ask with the password.
func TestAdminSessionNotRecorded(t *testing.T) {
	t.Setenv(TestShortCountdownEnv, "1")
	ts, _ := selfUpdateServer(t, "7.00.240501A")
	// A folder where the record goes: no file can be renamed onto it.
	if err := os.MkdirAll(filepath.Join(ts.srv.upd.dir, adminTokensFile, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	src := makeRelease(t, t.TempDir(), "7.01.250101A", map[string]string{serverProgram: "#!/bin/sh\n"}, vendorKey)
	res := adminSession(t, ts.addr, "correct horse", syncproto.Admin{Op: syncproto.OpUpdate, Source: src, Countdown: 300}, nil)
	wantCode(t, res.err, syncproto.CodeRefused, "cannot record the administrator's session")
	if res.session != nil || len(res.statuses) != 0 {
		t.Errorf("got %+v", res)
	}
	if st := ts.srv.upd.status(); st.State != syncproto.StateNone {
		t.Errorf("the update is %v", st.State)
	}
}
