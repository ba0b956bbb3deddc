package appserver

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/erpupdate/smartsync/internal/testtree"
)

// TestParseConfigLog: [LOG] is optional, with logs on stderr; File is
// relative to the configuration's folder; each key is checked, and a bad
// value is an error naming the file, section and key.
func TestParseConfigLog(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		text    string
		want    LogConfig
		key     string // of the error; "" for none
		problem string
	}{
		{"absent", "", defaultLog, "", ""},
		{"empty values", "[LOG]\nFile=\nMaxSizeMB=\nLevel=\n", defaultLog, "", ""},
		{"all set", "[log]\nfile=logs/appserver.log\nMaxSizeMB=5\nMaxFiles=0\nMaxAgeDays=30\nCompress=1\nFormat=JSON\nLevel=Debug\n",
			LogConfig{File: filepath.Join(dir, "logs", "appserver.log"), MaxSizeMB: 5, MaxFiles: 0, MaxAgeDays: 30, Compress: true, Format: "json", Level: slog.LevelDebug}, "", ""},
		{"absolute file", "[LOG]\nFile=" + filepath.Join(dir, "a.log") + "\nLevel=error\n",
			LogConfig{File: filepath.Join(dir, "a.log"), MaxSizeMB: 100, MaxFiles: 10, Format: "text", Level: slog.LevelError}, "", ""},
		{"file is a folder", "[LOG]\nFile=logs/\n", defaultLog, "File", `"logs/" is not a file name`},
		{"size zero", "[LOG]\nMaxSizeMB=0\n", defaultLog, "MaxSizeMB", `"0" is not a number of megabytes from 1 to 100000`},
		{"size word", "[LOG]\nMaxSizeMB=big\n", defaultLog, "MaxSizeMB", `"big" is not a number of megabytes`},
		{"files negative", "[LOG]\nMaxFiles=-1\n", defaultLog, "MaxFiles", `"-1" is not a number of files from 0 to 100000`},
		{"age too long", "[LOG]\nMaxAgeDays=99999\n", defaultLog, "MaxAgeDays", `"99999" is not a number of days from 0 to 36500`},
		{"compress", "[LOG]\nCompress=maybe\n", defaultLog, "Compress", `"maybe" is not a yes/no value`},
		{"format", "[LOG]\nFormat=xml\n", defaultLog, "Format", `"xml" is not a log format; write text or json`},
		{"level", "[LOG]\nLevel=verbose\n", defaultLog, "Level", `"verbose" is not a log level; write debug, info, warn or error`},
		{"unknown key", "[LOG]\nMaxFile=3\n", defaultLog, "MaxFile", "unknown key (did you mean MaxFiles?)"},
		{"twice", "[LOG]\nLevel=info\nLevel=debug\n", defaultLog, "Level", "given 2 times"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig("AppServer.ini", []byte(baseINI+tc.text), dir)
			if tc.key == "" {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.Log != tc.want {
					t.Errorf("Log = %+v, want %+v", cfg.Log, tc.want)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a ConfigError", err)
			}
			if ce.File != "AppServer.ini" || ce.Section != "LOG" || ce.Key != tc.key || !strings.Contains(ce.Problem, tc.problem) {
				t.Errorf("got %s (section %q, key %q), want [LOG] %s: ...%s...", ce, ce.Section, ce.Key, tc.key, tc.problem)
			}
		})
	}
}

// logConfig is a validated configuration with [LOG] set from text.
func logConfig(t *testing.T, dir, text string) *Config {
	t.Helper()
	cfg, err := ParseConfig(filepath.Join(dir, "AppServer.ini"), []byte(baseINI+text), dir)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestLogRotation: through the server's own logger, a file is rotated when
// it reaches MaxSizeMB, the rotated files are named with the time of the
// rotation, and only MaxFiles of them are kept.
func TestLogRotation(t *testing.T) {
	dir := t.TempDir()
	cfg := logConfig(t, dir, "[LOG]\nFile=logs/appserver.log\nMaxSizeMB=1\nMaxFiles=2\n")
	var stderr bytes.Buffer
	log, closer, err := openLog(cfg, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", 1000)
	const records = 4500 // about 4.5 MB: four rotations
	for i := range records {
		log.Info("filler", "i", i, "pad", pad)
		if i%500 == 0 {
			// Rotated files are named to the millisecond: keep two
			// rotations from falling in the same one.
			time.Sleep(5 * time.Millisecond)
		}
	}
	log.Info("last record")
	if err := closer.Close(); err != nil {
		t.Fatal(err)
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr got %q, want nothing with [LOG] File set", stderr.String())
	}
	logs := filepath.Join(dir, "logs")
	backup := regexp.MustCompile(`^appserver-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3}\.log$`)
	// Old rotated files are removed by lumberjack in the background.
	var names []string
	for deadline := time.Now().Add(10 * time.Second); ; {
		ents, err := os.ReadDir(logs)
		if err != nil {
			t.Fatal(err)
		}
		names = names[:0]
		for _, e := range ents {
			names = append(names, e.Name())
		}
		if len(names) == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(names) != 3 {
		t.Fatalf("logs folder holds %q, want appserver.log and 2 rotated files", names)
	}
	var backups int
	for _, n := range names {
		fi, err := os.Stat(filepath.Join(logs, n))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > 1<<20 {
			t.Errorf("%s is %d bytes, over MaxSizeMB=1", n, fi.Size())
		}
		switch {
		case n == "appserver.log":
		case backup.MatchString(n):
			backups++
			if fi.Size() < 1<<20-4096 {
				t.Errorf("rotated file %s is %d bytes, want it rotated at about 1 MB", n, fi.Size())
			}
		default:
			t.Errorf("unexpected file %s", n)
		}
	}
	if backups != 2 {
		t.Errorf("%d rotated files in %q, want 2", backups, names)
	}
	cur, err := os.ReadFile(filepath.Join(logs, "appserver.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cur), `msg="last record"`) {
		t.Errorf("appserver.log lacks the last record")
	}
}

// TestLogJSON: Format=json writes one JSON object a line, with time, level
// and msg, to the file and nothing to stderr.
func TestLogJSON(t *testing.T) {
	dir := t.TempDir()
	cfg := logConfig(t, dir, "[LOG]\nFile=appserver.log\nFormat=json\n")
	var stderr bytes.Buffer
	log, closer, err := openLog(cfg, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("started", "port", 1234)
	log.Warn("slow client", "addr", "10.0.0.1:5000")
	closer.Close()
	if stderr.Len() != 0 {
		t.Errorf("stderr got %q, want nothing", stderr.String())
	}
	f, err := os.Open(filepath.Join(dir, "appserver.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var msgs []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("line %q is not JSON: %v", sc.Text(), err)
		}
		if _, err := time.Parse(time.RFC3339Nano, rec["time"].(string)); err != nil {
			t.Errorf("time in %q: %v", sc.Text(), err)
		}
		if rec["level"] == nil {
			t.Errorf("no level in %q", sc.Text())
		}
		msgs = append(msgs, rec["level"].(string)+" "+rec["msg"].(string))
	}
	if want := []string{"INFO started", "WARN slow client"}; strings.Join(msgs, "|") != strings.Join(want, "|") {
		t.Errorf("records %q, want %q", msgs, want)
	}
}

// TestLogLevel: records below [LOG] Level are not written.
func TestLogLevel(t *testing.T) {
	for _, tc := range []struct {
		level string
		want  []string
	}{
		{"debug", []string{"DEBUG", "INFO", "WARN", "ERROR"}},
		{"", []string{"INFO", "WARN", "ERROR"}},
		{"warn", []string{"WARN", "ERROR"}},
		{"error", []string{"ERROR"}},
	} {
		t.Run(tc.level, func(t *testing.T) {
			dir := t.TempDir()
			cfg := logConfig(t, dir, "[LOG]\nFile=appserver.log\nLevel="+tc.level+"\n")
			log, closer, err := openLog(cfg, os.Stderr)
			if err != nil {
				t.Fatal(err)
			}
			log.Debug("d")
			log.Info("i")
			log.Warn("w")
			log.Error("e")
			closer.Close()
			data, err := os.ReadFile(filepath.Join(dir, "appserver.log"))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range regexp.MustCompile(`level=(\w+)`).FindAllStringSubmatch(string(data), -1) {
				got = append(got, m[1])
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("levels written %q, want %q", got, tc.want)
			}
		})
	}
}

// TestLogFileUnwritable: a [LOG] File that cannot be written stops the
// server at start-up with a configuration error naming the key.
func TestLogFileUnwritable(t *testing.T) {
	dir := t.TempDir()
	// A folder in the path is a file: no permission bits, which root
	// would ignore.
	writeFile(t, filepath.Join(dir, "notafolder"), "x")
	cfgPath := filepath.Join(dir, "AppServer.ini")
	writeFile(t, cfgPath, baseINI+"[LOG]\nFile=notafolder/appserver.log\n")
	var out, errb testtree.Buffer
	err := RunServer(t.Context(), ServeOptions{Config: cfgPath, Check: true}, &out, &errb)
	if !errors.Is(err, ErrUsage) {
		t.Fatalf("got %v, want a usage error", err)
	}
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Section != "LOG" || ce.Key != "File" || ce.File != cfgPath ||
		!strings.Contains(ce.Problem, "cannot write the log file") {
		t.Errorf("got %v, want %s: [LOG] File: cannot write the log file: ...", err, cfgPath)
	}
}

// TestLogCheckReports: "appserver --check" says where the logs go, and
// opens the file, as the server would.
func TestLogCheckReports(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "AppServer.ini")
	for _, tc := range []struct {
		log, want string
	}{
		{"", "Log      standard error, text, level info\n"},
		{"[LOG]\nFile=logs/appserver.log\nMaxFiles=3\nCompress=1\nFormat=json\nLevel=warn\n",
			"Log      " + filepath.Join(dir, "logs", "appserver.log") + ", json, level warn; rotated at 100 MB, 3 rotated files kept, gzipped\n"},
	} {
		writeFile(t, cfgPath, baseINI+tc.log)
		var out, errb testtree.Buffer
		if err := RunServer(t.Context(), ServeOptions{Config: cfgPath, Check: true}, &out, &errb); err != nil {
			t.Fatalf("--check: %v\n%s", err, errb.String())
		}
		if !strings.Contains(out.String(), tc.want) {
			t.Errorf("--check printed:\n%s\nwant a line %q", out.String(), tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "logs", "appserver.log")); err != nil {
		t.Errorf("--check did not open the log file: %v", err)
	}
}

// TestLogHelper: the self-update helper writes to the [LOG] File of the
// configuration its journal names, appending to what the server wrote;
// without one, or when it cannot read it, it writes to stderr.
func TestLogHelper(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "AppServer.ini")
	// Only [LOG] is read: the rest may be mid-swap.
	writeFile(t, cfgPath, "[LOG]\nFile=appserver.log\nFormat=json\n")
	logPath := filepath.Join(dir, "appserver.log")
	writeFile(t, logPath, `{"msg":"from the server"}`+"\n")
	journal := filepath.Join(dir, "journal.json")
	writeFile(t, journal, `{"version":1,"config_file":`+strings.ReplaceAll(`"`+cfgPath+`"`, `\`, `\\`)+`}`)

	var stderr bytes.Buffer
	helperLogger(journal, &stderr).Info("phase", "phase", "stopped")
	if stderr.Len() != 0 {
		t.Errorf("stderr got %q, want nothing", stderr.String())
	}
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], `"msg":"phase","phase":"stopped"`) {
		t.Errorf("log file holds %q, want the server's line and the helper's JSON record", lines)
	}

	os.Remove(cfgPath)
	stderr.Reset()
	helperLogger(journal, &stderr).Info("phase", "phase", "swapped")
	if s := stderr.String(); !strings.Contains(s, "logging to standard error") || !strings.Contains(s, "phase=swapped") {
		t.Errorf("without a configuration stderr got %q, want a warning and the record", s)
	}
}
