package journal

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/smartclient/internal/backup"
	"github.com/erpupdate/smartsync/smartclient/internal/install"
	"github.com/erpupdate/smartsync/smartclient/internal/installtest"
	"github.com/erpupdate/smartsync/smartclient/internal/state"
	"github.com/zeebo/blake3"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

var errInjected = errors.New("injected fault")

const newBuild = "7.00.240501A"

// legacyBuild is the build of the legacy switch fixture's old state.
const legacyBuild = "7.00.231101A"

// makeLegacySwitchFixture is the switch fixture with the old release's
// state in a state.LegacyFile, as a build before the binary state file left
// it.
func makeLegacySwitchFixture(t testing.TB) string {
	t.Helper()
	dir := installtest.SwitchFixture(t)
	st := &state.State{Version: state.Version, ClientID: "test", Build: legacyBuild, Files: map[string]state.FileState{}}
	for p, c := range installtest.OldRelease {
		if p != "mine.txt" {
			sum := blake3.Sum256([]byte(c))
			st.Files[p] = state.FileState{Size: int64(len(c)), Hash: hex.EncodeToString(sum[:])}
		}
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	installtest.WriteFiles(t, dir, map[string]string{state.LegacyFile: string(data)})
	return dir
}

// fixtureJournal is the journal of the fixture's switch.
func fixtureJournal() *Journal {
	st := &state.State{Version: state.Version, ClientID: "test", Build: newBuild, Files: map[string]state.FileState{}}
	hashes := map[string]string{}
	for p, c := range installtest.Staged {
		if dir, ok := strings.CutSuffix(p, "/"); ok {
			hashes[dir] = state.DirHash
			st.Files[dir] = state.FileState{Hash: state.DirHash}
			continue
		}
		sum := blake3.Sum256([]byte(c))
		hashes[p] = hex.EncodeToString(sum[:])
		st.Files[p] = state.FileState{Size: int64(len(c)), Hash: hashes[p]}
	}
	return &Journal{Install: []string{"a", "config.ini", "d/e", "d/empty", "f/g", "lib/c", "lib/empty"}, Remove: []string{"b"}, State: st, Hashes: hashes}
}

// doSwitch is what a sync does once every file is staged: back up, write
// the journal, switch.
func doSwitch(ctx context.Context, d *install.Disk) error {
	j := fixtureJournal()
	var err error
	if j.Backup, err = backup.Prepare(ctx, d); err != nil {
		return err
	}
	return Commit(ctx, d, j, discard)
}

// checkInvariant is invariant I: the install is exactly the old or the
// new release, nothing of a switch is left over, and there are at most
// three backups, each a complete earlier install. It returns which
// release the install is.
func checkInvariant(t testing.TB, dir, when string) string {
	t.Helper()
	got := installtest.ReadTree(t, dir)
	which := ""
	switch {
	case maps.Equal(got, installtest.OldRelease):
		which = "old"
	case maps.Equal(got, installtest.NewRelease):
		which = "new"
	default:
		t.Fatalf("%s: the install is neither release: %v", when, got)
	}
	d := installtest.OpenDisk(t, dir)
	for _, p := range []string{File, install.StagingDir, install.OldDir, install.NewBackupDir, install.DropBackup} {
		if d.Exists(p) {
			t.Errorf("%s: %s left behind", when, p)
		}
	}
	complete := append([]map[string]string{installtest.OldRelease}, installtest.OlderOnes...)
	backups, _ := filepath.Glob(filepath.Join(dir, "bkp_remote.*"))
	if len(backups) > backup.Max {
		t.Errorf("%s: %d backups", when, len(backups))
	}
	for _, b := range backups {
		tree := installtest.ReadTree(t, b)
		ok := false
		for _, c := range complete {
			ok = ok || maps.Equal(tree, c)
		}
		if !ok {
			t.Errorf("%s: %s is not a complete install: %v", when, filepath.Base(b), tree)
		}
	}
	// The state says what is installed.
	st, err := state.Load(dir)
	if err != nil {
		t.Fatalf("%s: %v", when, err)
	}
	if (which == "new") != (st.Build == newBuild) {
		t.Errorf("%s: the install is the %s release but the state says build %q", when, which, st.Build)
	}
	return which
}

// countOps counts the file-system operations of a whole switch.
func countOps(t *testing.T, fixture func(testing.TB) string) int {
	d := installtest.OpenDisk(t, fixture(t))
	n := 0
	d.Faults.Op = func(string, string) error { n++; return nil }
	defer func() { d.Faults.Op = nil }()
	if err := doSwitch(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestFailureAtEveryOperationRollsBack makes each operation of the switch
// fail in the running client, as a full disk, an I/O error on fsync or on
// rename would: the install is the old release again, the backups are
// the old ones, and the error says what failed.
func TestFailureAtEveryOperationRollsBack(t *testing.T) {
	t.Run("no state", func(t *testing.T) { failAtEveryOperation(t, installtest.SwitchFixture, "") })
	// The old state is put back in the new format, and the legacy file
	// goes once the new state is written.
	t.Run("legacy state", func(t *testing.T) { failAtEveryOperation(t, makeLegacySwitchFixture, legacyBuild) })
}

// failAtEveryOperation fails each operation of the switch in turn on the
// install fixture makes, whose old state records oldBuild.
func failAtEveryOperation(t *testing.T, fixture func(testing.TB) string, oldBuild string) {
	n := countOps(t, fixture)
	for k := 1; k <= n; k++ {
		dir := fixture(t)
		d := installtest.OpenDisk(t, dir)
		count := 0
		var failed string
		committed := false // the new state was written before the fault
		d.Faults.Op = func(op, name string) error {
			count++
			if count == k {
				failed = op + " " + name
				return errInjected
			}
			committed = committed || (op == "write" && name == state.File)
			return nil
		}
		err := doSwitch(t.Context(), d)
		d.Faults.Op = nil
		// The next start recovers whatever is left.
		if rerr := Recover(d, discard); rerr != nil {
			t.Fatalf("fault at operation %d (%s): recovery: %v", k, failed, rerr)
		}
		which := checkInvariant(t, dir, fmt.Sprintf("fault at operation %d (%s)", k, failed))
		switch {
		case committed || strings.HasPrefix(failed, "link "):
			// Once the new state is written the switch is done, and a
			// fault while tidying is only logged; a backup file that
			// cannot be linked is copied instead.
			if err != nil || which != "new" {
				t.Errorf("fault at operation %d (%s): %v, and the %s release", k, failed, err, which)
			}
		case !errors.Is(err, errInjected) || which != "old":
			t.Errorf("fault at operation %d (%s): %v, and the %s release; want the fault reported and the old release", k, failed, err, which)
		default:
			if st, err := state.Load(dir); err != nil || st.Build != oldBuild {
				t.Errorf("fault at operation %d (%s): rolled back, but the state is %v, %v; want build %q", k, failed, st, err, oldBuild)
			}
		}
	}
	t.Logf("%d fault points", n)
}

// The crash-point enumeration: a child process (this test binary) runs
// the switch and exits for real at operation k, as a kill or a power cut
// would stop it; then recovery runs, itself killed zero to three times at
// its own operations, and invariant I must hold (see installtest's crash
// children).

// TestCrashChild is the child's side; it does nothing in a normal run.
func TestCrashChild(t *testing.T) {
	dir, action, at, ok := installtest.ChildEnv()
	if !ok {
		t.Skip("runs only as the child of TestCrashAtEveryOperation")
	}
	d := installtest.OpenDisk(t, dir)
	d.Faults.Op = installtest.CrashAt(at)
	var err error
	switch action {
	case "switch":
		err = doSwitch(context.Background(), d)
	case "recover":
		err = Recover(d, discard)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestCrashAtEveryOperation(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process per crash point")
	}
	n := countOps(t, installtest.SwitchFixture)
	points, recoveryCrashes := 0, 0
	seen := map[string]int{}
	for k := 1; k <= n; k++ {
		dir := installtest.SwitchFixture(t)
		if !installtest.CrashChild(t, dir, "switch", k) {
			t.Fatalf("the switch finished before operation %d of %d", k, n)
		}
		points++
		// Crash recovery too, 0 to 3 times in a row, at varying points.
		for i := range k % 4 {
			if installtest.CrashChild(t, dir, "recover", 1+(k+i)%3) {
				recoveryCrashes++
			}
		}
		d := installtest.OpenDisk(t, dir)
		if err := Recover(d, discard); err != nil {
			t.Fatalf("crash at operation %d: recovery: %v", k, err)
		}
		seen[checkInvariant(t, dir, fmt.Sprintf("crash at operation %d", k))]++
	}
	if seen["old"] == 0 || seen["new"] == 0 {
		t.Errorf("outcomes %v: expected both rollbacks and roll-forwards", seen)
	}
	t.Logf("%d crash points in the switch, %d crashes during recovery; after recovery: %v", points, recoveryCrashes, seen)
}

// halfSwitch backs up, writes the journal and stops the switch halfway,
// after the first file is in place, as a crash would; it returns the
// journal.
func halfSwitch(t *testing.T, d *install.Disk) *Journal {
	t.Helper()
	count := 0
	d.Faults.Op = func(op, name string) error {
		if op == "rename" && !strings.HasPrefix(name, install.MetaDir) {
			count++
			if count == 2 {
				return errInjected
			}
		}
		return nil
	}
	defer func() { d.Faults.Op = nil }()
	j := backedUpJournal(t, d)
	if err := play(d, j, discard); !errors.Is(err, errInjected) {
		t.Fatalf("play: %v", err)
	}
	return j
}

// backedUpJournal makes the backup of the fixture's install and writes
// fixtureJournal, as a switch does before its first rename.
func backedUpJournal(t *testing.T, d *install.Disk) *Journal {
	t.Helper()
	j := fixtureJournal()
	var err error
	if j.Backup, err = backup.Prepare(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	if err := writeJournal(d, j); err != nil {
		t.Fatal(err)
	}
	return j
}

func TestDamagedJournalRollsBack(t *testing.T) {
	for name, damage := range map[string]func(b []byte) []byte{
		"torn":         func(b []byte) []byte { return b[:len(b)/2] },
		"bit flipped":  func(b []byte) []byte { b[len(b)/2] ^= 0x20; return b },
		"not json":     func([]byte) []byte { return []byte("garbage") },
		"empty":        func([]byte) []byte { return nil },
		"other fields": func([]byte) []byte { return []byte(`{"blake3":"00","journal":{}}`) },
		"header only":  func(b []byte) []byte { head, _, _ := bytes.Cut(b, []byte("\n")); return head },
		"no header":    func(b []byte) []byte { _, body, _ := bytes.Cut(b, []byte("\n")); return body },
		"other version": func(b []byte) []byte {
			return bytes.Replace(b, []byte(journalHeader), []byte("smartclient-journal 5 "), 1)
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := installtest.SwitchFixture(t)
			d := installtest.OpenDisk(t, dir)
			halfSwitch(t, d)
			p := filepath.Join(dir, filepath.FromSlash(File))
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, damage(b), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := Recover(d, discard); err != nil {
				t.Fatalf("recovery: %v", err)
			}
			if which := checkInvariant(t, dir, name); which != "old" {
				t.Errorf("a damaged journal led to the %s release", which)
			}
		})
	}
}

// TestRecoversVersion2Journal: a journal in the JSON envelope of version
// 2, which an older smartclient left when it was killed mid-switch, is
// still obeyed by recovery.
func TestRecoversVersion2Journal(t *testing.T) {
	dir := installtest.SwitchFixture(t)
	d := installtest.OpenDisk(t, dir)
	j := halfSwitch(t, d)
	// The same journal as version 2 wrote it.
	v2 := *j
	v2.Version = journalVersion2
	body, err := json.Marshal(&v2)
	if err != nil {
		t.Fatal(err)
	}
	sum := blake3.Sum256(body)
	data, err := json.Marshal(envelope{Sum: hex.EncodeToString(sum[:]), Journal: body})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(File)), data, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := readJournal(d)
	if err != nil {
		t.Fatalf("reading a version 2 journal: %v", err)
	}
	if got.Version != journalVersion || got.State.Build != newBuild || len(got.State.Files) != len(j.State.Files) || len(got.Install) != len(j.Install) {
		t.Fatalf("version 2 journal read as %+v", got)
	}
	if err := Recover(d, discard); err != nil {
		t.Fatalf("recovery: %v", err)
	}
	if which := checkInvariant(t, dir, "version 2 journal"); which != "new" {
		t.Errorf("a whole version 2 journal led to the %s release, want the new one", which)
	}
}

// TestLockedFileIsRetriedThenRolledBack: a file another program holds is
// retried with backoff; if it stays locked the update is rolled back and
// the message names the file.
func TestLockedFileIsRetriedThenRolledBack(t *testing.T) {
	for _, tc := range []struct {
		name     string
		failures int // times the rename of lib/c finds it locked
		want     string
	}{
		{"released while retrying", 2, "new"},
		{"stays locked", 100, "old"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := installtest.SwitchFixture(t)
			d := installtest.OpenDisk(t, dir)
			d.Faults.LockedBackoff = []time.Duration{time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond}
			n := 0
			d.Faults.Op = func(op, name string) error {
				// lib/c is moved aside (on Windows) or replaced outright.
				if op == "rename" && (name == install.OldDir+"/lib/c" || name == "lib/c") && n < tc.failures {
					n++
					return &fs.PathError{Op: "rename", Path: name, Err: installtest.ErrLocked}
				}
				return nil
			}
			err := doSwitch(t.Context(), d)
			d.Faults.Op = nil
			Tidy(d, discard)
			if which := checkInvariant(t, dir, tc.name); which != tc.want {
				t.Fatalf("install is the %s release, want %s (err %v)", which, tc.want, err)
			}
			if tc.want == "old" && (!errors.Is(err, install.ErrLocked) || !errors.Is(err, ErrRolledBack) || !strings.Contains(err.Error(), "lib/c")) {
				t.Errorf("error %v; want a rollback naming lib/c as locked", err)
			}
		})
	}
}

// TestRotationRepairsGapsAndRefusesFiles: a missing middle backup is
// closed up before the new one goes in; a backup slot that is a file
// stops the update before the install is touched.
func TestRotationRepairsGapsAndRefusesFiles(t *testing.T) {
	t.Run(".002 missing", func(t *testing.T) {
		dir := installtest.SwitchFixture(t)
		os.RemoveAll(filepath.Join(dir, backup.Name(2)))
		if err := doSwitch(t.Context(), installtest.OpenDisk(t, dir)); err != nil {
			t.Fatal(err)
		}
		want := []map[string]string{installtest.OlderOnes[0], installtest.OlderOnes[2], installtest.OldRelease}
		for i, w := range want {
			if got := installtest.ReadTree(t, filepath.Join(dir, backup.Name(i+1))); !maps.Equal(got, w) {
				t.Errorf("%s: %v, want %v", backup.Name(i+1), got, w)
			}
		}
	})
	t.Run(".003 is a file", func(t *testing.T) {
		dir := installtest.SwitchFixture(t)
		p := filepath.Join(dir, backup.Name(3))
		os.RemoveAll(p)
		if err := os.WriteFile(p, []byte("not a backup"), 0o644); err != nil {
			t.Fatal(err)
		}
		err := doSwitch(t.Context(), installtest.OpenDisk(t, dir))
		if err == nil || !strings.Contains(err.Error(), "bkp_remote.003 is not a folder") {
			t.Fatalf("got %v", err)
		}
		if got := installtest.ReadTree(t, dir); !maps.Equal(got, installtest.OldRelease) {
			t.Errorf("install changed: %v", got)
		}
	})
}

// TestUndoPutsBackThePreviousState: when the new state was written but its
// save still failed (the folder's sync, after the rename), undo puts back
// the state the journal kept: none, or a legacy one in the new format.
func TestUndoPutsBackThePreviousState(t *testing.T) {
	for _, tc := range []struct {
		name    string
		fixture func(testing.TB) string
		build   string
	}{
		{"no state", installtest.SwitchFixture, ""},
		{"legacy state", makeLegacySwitchFixture, legacyBuild},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.fixture(t)
			d := installtest.OpenDisk(t, dir)
			j := fixtureJournal()
			if err := writeJournal(d, j); err != nil {
				t.Fatal(err)
			}
			j.State.Journal = j.sum
			if err := j.State.Save(d); err != nil {
				t.Fatal(err)
			}
			// What recovery reads back, PrevState through JSON.
			j, err := readJournal(d)
			if err != nil {
				t.Fatal(err)
			}
			if !committed(d, j) {
				t.Fatal("the saved state does not name the journal")
			}
			if err := undo(d, j); err != nil {
				t.Fatal(err)
			}
			st, err := state.Load(dir)
			if err != nil || st.Build != tc.build || st.FromDisk() != (tc.build != "") {
				t.Fatalf("after undo: %+v, %v; want build %q", st, err, tc.build)
			}
			if d.Exists(state.LegacyFile) {
				t.Error("the legacy state file is still there")
			}
		})
	}
}

// TestJournalLeavesOutTheStatesHashes: the journal's JSON spells only the
// hashes its new state does not hold as they are (a link's, a file's the
// state records otherwise), and reading it back gives every hash again.
func TestJournalLeavesOutTheStatesHashes(t *testing.T) {
	dir := installtest.SwitchFixture(t)
	d := installtest.OpenDisk(t, dir)
	j := fixtureJournal()
	j.Install = append(j.Install, "lnk")
	j.Hashes["lnk"] = LinkPrefix + "a"
	j.State.Files["lnk"] = state.FileState{Size: 1, Hash: strings.Repeat("0", 64)}
	j.Hashes["d/e"] = strings.Repeat("e", 64) // not what the state records
	want := maps.Clone(j.Hashes)
	if err := saveJournal(d, j); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(File)))
	if err != nil {
		t.Fatal(err)
	}
	// The JSON follows the header line; the states after it hold the
	// hashes they record (a folder's among them).
	_, body, _ := bytes.Cut(data, []byte{'\n'})
	var js json.RawMessage
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&js); err != nil {
		t.Fatal(err)
	}
	for p, h := range want {
		spelled := bytes.Contains(js, []byte(`"`+h+`"`))
		if beyond := p == "lnk" || p == "d/e"; spelled != beyond {
			t.Errorf("hash of %s spelled in the journal: %v, want %v", p, spelled, beyond)
		}
	}
	if !maps.Equal(j.Hashes, want) {
		t.Errorf("saving changed the journal's hashes: %v, want %v", j.Hashes, want)
	}
	got, err := readJournal(d)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got.Hashes, want) {
		t.Errorf("read back hashes %v, want %v", got.Hashes, want)
	}
}

// FuzzReadJournal: whatever bytes the journal file holds, reading it never
// panics, and a journal it accepts is one recovery can act on.
func FuzzReadJournal(f *testing.F) {
	dir := installtest.SwitchFixture(f)
	d := installtest.OpenDisk(f, dir)
	if err := writeJournal(d, fixtureJournal()); err != nil {
		f.Fatal(err)
	}
	good, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(File)))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"blake3":"","journal":null}`))
	f.Add([]byte(journalHeader + "00\n{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(File)), data, 0o644); err != nil {
			t.Fatal(err)
		}
		j, err := readJournal(d)
		if err != nil {
			return
		}
		if j == nil || j.State == nil || j.State.Files == nil || j.Version != journalVersion {
			t.Fatalf("accepted a journal recovery cannot use: %+v", j)
		}
	})
}

// TestDamagedJournalRollsBackWithoutHardLinks: where the file system
// cannot link, the snapshot's copies are copied back.
func TestDamagedJournalRollsBackWithoutHardLinks(t *testing.T) {
	dir := installtest.SwitchFixture(t)
	d := installtest.OpenDisk(t, dir)
	d.Faults.Op = func(op, name string) error {
		if op == "link" {
			return &fs.PathError{Op: "link", Path: name, Err: syscall.EPERM}
		}
		return nil
	}
	defer func() { d.Faults.Op = nil }()
	backedUpJournal(t, d)
	// Halfway through the switch, the journal is damaged.
	if err := moveAside(d, "a"); err != nil {
		t.Fatal(err)
	}
	if err := d.Rename(install.StagingDir+"/a", "a"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(File)), []byte("{torn"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Recover(d, discard); err != nil {
		t.Fatalf("recovery: %v", err)
	}
	d.Faults.Op = nil
	if which := checkInvariant(t, dir, "without hard links"); which != "old" {
		t.Errorf("got the %s release", which)
	}
}

// TestJournalNamesOutrightFiles: the journal names the files the snapshot
// holds by hard link, which the switch replaces or removes without moving
// them aside; an INI file, which the snapshot copied, is moved aside.
func TestJournalNamesOutrightFiles(t *testing.T) {
	dir := installtest.SwitchFixture(t)
	d := installtest.OpenDisk(t, dir)
	j := backedUpJournal(t, d)
	slices.Sort(j.Outright)
	want := []string{"a", "b", "lib/c"} // replaced, removed, replaced
	if runtime.GOOS == "windows" {
		want = nil
	}
	if !slices.Equal(j.Outright, want) {
		t.Errorf("outright %v, want %v", j.Outright, want)
	}
	got, err := readJournal(d)
	if err != nil || !slices.Equal(slices.Sorted(maps.Keys(got.outright)), want) {
		t.Errorf("read back: outright %v, %v; want %v", got.outright, err, want)
	}
}

// TestUndoOfAFileChangedAfterTheSwitch: a file that changes after the
// switch put it in place (here a post-install step appends to it before
// it fails) is undone all the same: one installed over an old file is
// replaced by the old one, one new to the install (in a folder moved
// whole) is removed, and its folder.
func TestUndoOfAFileChangedAfterTheSwitch(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		open       func(testing.TB, string) *install.Disk
	}{
		{"installed over an old file", "a", installtest.OpenDisk},
		{"new to the install", "d/e", installtest.OpenCachedDisk},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := installtest.SwitchFixture(t)
			post, script := "post.sh", "#!/bin/sh\necho patched >> "+tc.file+"\nexit 1\n"
			if runtime.GOOS == "windows" {
				post, script = "post.cmd", "@echo off\r\necho patched>> "+filepath.FromSlash(tc.file)+"\r\nexit /b 1\r\n"
			}
			installtest.WriteFiles(t, filepath.Join(dir, filepath.FromSlash(install.StagingDir)), map[string]string{post: script})
			if err := os.Chmod(filepath.Join(dir, filepath.FromSlash(install.StagingDir), post), 0o755); err != nil {
				t.Fatal(err)
			}
			d := tc.open(t, dir)
			j := fixtureJournal()
			j.Install = append(j.Install, post)
			sum := blake3.Sum256([]byte(script))
			j.Hashes[post] = hex.EncodeToString(sum[:])
			j.PostInstall = &PostInstallStep{Path: post, Timeout: 10 * time.Second}
			var err error
			if j.Backup, err = backup.Prepare(t.Context(), d); err != nil {
				t.Fatal(err)
			}
			// The step ran (and changed the file) before it failed.
			if err := Commit(t.Context(), d, j, discard); !errors.Is(err, ErrRolledBack) || !strings.Contains(err.Error(), post+": exit status 1") {
				t.Fatalf("commit: %v; want a rollback after the step exited with 1", err)
			}
			Tidy(d, discard)
			if which := checkInvariant(t, dir, "after the failed post-install"); which != "old" {
				t.Errorf("install is the %s release, want old", which)
			}
		})
	}
}

// playUntilRenameOf plays j until the rename of name fails, where a crash
// would have stopped the switch.
func playUntilRenameOf(t *testing.T, d *install.Disk, j *Journal, name string) {
	t.Helper()
	d.Faults.Op = func(op, n string) error {
		if op == "rename" && n == name {
			return errInjected
		}
		return nil
	}
	err := play(d, j, discard)
	d.Faults.Op = nil
	if !errors.Is(err, errInjected) {
		t.Fatalf("play: %v", err)
	}
}

// TestRecoveryUndoesAChangedInstalledFile: after a crash halfway through
// the switch, a file already installed that no longer matches its hash
// makes recovery roll back, and the old file comes back over it.
func TestRecoveryUndoesAChangedInstalledFile(t *testing.T) {
	dir := installtest.SwitchFixture(t)
	d := installtest.OpenDisk(t, dir)
	playUntilRenameOf(t, d, backedUpJournal(t, d), "lib/c")
	// In place: the very file the switch installed.
	f, err := os.OpenFile(filepath.Join(dir, "a"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(", edited")
	f.Close()
	if err := Recover(d, discard); err != nil {
		t.Fatal(err)
	}
	if which := checkInvariant(t, dir, "after recovery"); which != "old" {
		t.Errorf("install is the %s release, want old", which)
	}
}

// backedUpJournal3 is backedUpJournal for a journal of version 3, as an
// earlier client wrote it: without the Outright list.
func backedUpJournal3(t *testing.T, d *install.Disk) *Journal {
	t.Helper()
	j := fixtureJournal()
	var err error
	if j.Backup, err = backup.Prepare(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	if err := saveJournalAs(d, j, journalVersion3); err != nil {
		t.Fatal(err)
	}
	return j
}

// TestJournalOfVersion3: a switch an earlier client began, which moved
// every old file aside, is finished or undone by this one.
func TestJournalOfVersion3(t *testing.T) {
	for _, forward := range []bool{true, false} {
		dir := installtest.SwitchFixture(t)
		d := installtest.OpenDisk(t, dir)
		j := backedUpJournal3(t, d)
		if j.Outright != nil {
			t.Fatalf("a journal of version 3 names outright files: %v", j.Outright)
		}
		playUntilRenameOf(t, d, j, "lib/c")
		if _, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(install.OldDir), "a")); err != nil {
			t.Errorf("version 3: the old a was not moved aside: %v", err)
		}
		want := "new"
		if !forward {
			// A staged file gone: recovery must undo.
			if err := os.Remove(filepath.Join(dir, filepath.FromSlash(install.StagingDir), "lib", "c")); err != nil {
				t.Fatal(err)
			}
			want = "old"
		}
		if err := Recover(d, discard); err != nil {
			t.Fatal(err)
		}
		if which := checkInvariant(t, dir, "after recovery"); which != want {
			t.Errorf("forward %v: install is the %s release, want %s", forward, which, want)
		}
	}
}

// TestNewFoldersMoveWhole: a folder new to the install comes in with one
// rename when staging holds exactly its files; one whose staged copy
// holds a file the journal does not install comes file by file, and that
// file stays out of the install.
func TestNewFoldersMoveWhole(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("folders move with renameat2(RENAME_NOREPLACE)")
	}
	files := map[string]string{"top.dll": "t", "bin/x.dll": "x", "bin/sub/y.dll": "y", "data/z.dat": "z"}
	for _, extra := range []bool{false, true} {
		dir := t.TempDir()
		installtest.WriteFiles(t, filepath.Join(dir, filepath.FromSlash(install.StagingDir)), files)
		if extra {
			installtest.WriteFiles(t, filepath.Join(dir, filepath.FromSlash(install.StagingDir)), map[string]string{"bin/stray.tmp": "?"})
		}
		d := installtest.OpenCachedDisk(t, dir)
		st := &state.State{Version: state.Version, ClientID: "test", Build: newBuild, Files: map[string]state.FileState{}}
		j := &Journal{State: st, Hashes: map[string]string{}}
		for _, p := range slices.Sorted(maps.Keys(files)) {
			sum := blake3.Sum256([]byte(files[p]))
			j.Install = append(j.Install, p)
			j.Hashes[p] = hex.EncodeToString(sum[:])
			st.Files[p] = state.FileState{Size: 1, Hash: j.Hashes[p]}
		}
		var renames []string
		d.Faults.Op = func(op, name string) error {
			if op == "rename" || op == "renamefresh" {
				renames = append(renames, name)
			}
			return nil
		}
		err := Commit(t.Context(), d, j, discard)
		d.Faults.Op = nil
		if err != nil {
			t.Fatalf("extra %v: %v", extra, err)
		}
		got := installtest.ReadTree(t, dir)
		for p, c := range files {
			if got[p] != c {
				t.Errorf("extra %v: %s = %q, want %q", extra, p, got[p], c)
			}
		}
		if _, ok := got["bin/stray.tmp"]; ok {
			t.Errorf("extra %v: a staged file the journal does not name was installed", extra)
		}
		want := []string{"bin", "data", "top.dll"}
		if extra {
			// bin file by file: the first of a folder not yet made
			// is tried without a lookup, then renamed once it is.
			want = []string{"data", "bin/sub/y.dll", "bin/sub/y.dll", "bin/x.dll", "top.dll"}
		}
		var into []string // renames into the install, not of the bookkeeping
		for _, n := range renames {
			if !install.Reserved(n) {
				into = append(into, n)
			}
		}
		if !slices.Equal(into, want) {
			t.Errorf("extra %v: renames into the install %v, want %v", extra, into, want)
		}
	}
}

// TestSwitchRecordsMtimes: the new state records each installed file's
// mtime as the disk has it: the server's, which staging gave the file, and
// a link's own, which no one set.
func TestSwitchRecordsMtimes(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("symbolic links need a privilege on Windows")
	}
	dir := installtest.SwitchFixture(t)
	if err := os.Symlink("a", filepath.Join(dir, filepath.FromSlash(install.StagingDir), "l")); err != nil {
		t.Fatal(err)
	}
	server := time.Unix(1_600_000_000, 987_654_321)
	for p := range installtest.Staged {
		if err := os.Chtimes(filepath.Join(dir, filepath.FromSlash(install.StagingDir), filepath.FromSlash(p)), server, server); err != nil {
			t.Fatal(err)
		}
	}
	d := installtest.OpenCachedDisk(t, dir)
	j := fixtureJournal()
	for p, k := range j.State.Files {
		k.MtimeNs, k.ServerMtimeNs = server.UnixNano(), server.UnixNano()
		j.State.Files[p] = k
	}
	j.Install = append(j.Install, "l")
	j.Hashes["l"] = LinkPrefix + "a"
	j.State.Files["l"] = state.FileState{MtimeNs: server.UnixNano(), ServerMtimeNs: server.UnixNano(), Hash: j.Hashes["l"]}
	var err error
	if j.Backup, err = backup.Prepare(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	if err := Commit(t.Context(), d, j, discard); err != nil {
		t.Fatal(err)
	}
	for _, p := range j.Install {
		fi, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(p)))
		if err != nil {
			t.Fatal(err)
		}
		if got := j.State.Files[p].MtimeNs; got != fi.ModTime().UnixNano() {
			t.Errorf("%s: state records mtime %d, the disk has %d", p, got, fi.ModTime().UnixNano())
		}
	}
	// The state file says the same (the journal's encoding of the files
	// is not reused once a file's mtime changed).
	saved, err := state.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := saved.LoadFiles(); err != nil {
		t.Fatal(err)
	}
	for _, p := range j.Install {
		if got, want := saved.Files[p], j.State.Files[p]; got != want {
			t.Errorf("%s: the state file records %+v, want %+v", p, got, want)
		}
	}
}
