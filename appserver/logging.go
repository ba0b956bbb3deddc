package appserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/erpupdate/smartsync/internal/winini"
	"gopkg.in/natefinch/lumberjack.v2"
)

// openLog returns the server's logger as cfg's [LOG] says, and what closes
// its file. Without [LOG] File it writes to stderr; when stderr is the
// systemd journal (see stderrIsJournal), records carry no time of their
// own, as the journal stamps every line.
//
// With File, the logs go to that file, rotated by lumberjack when it
// reaches MaxSizeMB: the file is renamed with the time of the rotation
// (appserver-2026-12-06T07-40-00.000.log) and a new one begun, and the
// oldest rotated files beyond MaxFiles or MaxAgeDays are removed. The file
// is opened at once, so that a path that cannot be written is a start-up
// error naming [LOG] File rather than a server that logs nowhere.
//
// lumberjack is not safe for two processes rotating the same file at once.
// Only one server runs per installation; the self-update helper, which
// also writes there (see helperLogger), never rotates.
func openLog(cfg *Config, stderr io.Writer) (*slog.Logger, io.Closer, error) {
	return openLogAt(cfg, stderr, cfg.Log.Level)
}

// openLogAt is openLog with the level given apart from cfg, so that a
// *slog.LevelVar can change it while the server runs (see Reload).
func openLogAt(cfg *Config, stderr io.Writer, level slog.Leveler) (*slog.Logger, io.Closer, error) {
	c := cfg.Log
	if c.File == "" {
		f, ok := stderr.(*os.File)
		if ok && stderrIsJournal(f, os.Getenv("JOURNAL_STREAM")) {
			return slog.New(newPriorityHandler(stderr, func(w io.Writer) slog.Handler { return logHandlerAt(w, c, true, level) })), io.NopCloser(nil), nil
		}
		return slog.New(logHandlerAt(stderr, c, false, level)), io.NopCloser(nil), nil
	}
	if err := checkLogFile(c.File); err != nil {
		return nil, nil, &ConfigError{File: cfg.File, Section: sectionLog, Key: keyLogFile,
			Problem: fmt.Sprintf("cannot write the log file: %v", err), Err: err}
	}
	w := &lumberjack.Logger{
		Filename:   c.File,
		MaxSize:    c.MaxSizeMB,
		MaxBackups: c.MaxFiles,
		MaxAge:     c.MaxAgeDays,
		Compress:   c.Compress,
		LocalTime:  true,
	}
	return slog.New(logHandlerAt(w, c, false, level)), w, nil
}

// checkLogFile makes the log file's folder and opens the file for
// appending, as lumberjack will.
func checkLogFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}

// logHandler is the handler for c's format and level; noTime leaves out
// the records' time.
func logHandler(w io.Writer, c LogConfig, noTime bool) slog.Handler {
	return logHandlerAt(w, c, noTime, c.Level)
}

// logHandlerAt is logHandler at level rather than c's.
func logHandlerAt(w io.Writer, c LogConfig, noTime bool, level slog.Leveler) slog.Handler {
	o := &slog.HandlerOptions{Level: level}
	if noTime {
		o.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	if c.Format == "json" {
		return slog.NewJSONHandler(w, o)
	}
	return slog.NewTextHandler(w, o)
}

// journalHandler is the handler for the systemd journal: no time (the
// journal stamps every line), and each record prefixed with its priority.
func journalHandler(stderr io.Writer, c LogConfig) slog.Handler {
	return newPriorityHandler(stderr, func(w io.Writer) slog.Handler { return logHandler(w, c, true) })
}

// helperLogger is the self-update helper's logger: to the server's [LOG]
// File when the configuration named in the journal at journalPath has one,
// else to stderr. The helper cannot load the whole configuration (its
// folders may be mid-swap, and a broken file must not stop an update half
// done), so it reads [LOG] alone, and falls back to stderr, saying why, if
// it cannot.
//
// The helper writes while the old server has exited, but also while the
// new server it started runs and logs to the same file. So it does not
// rotate: it opens the file for each record, appends it in one write and
// closes it again (appendFile), and leaves rotation to the server. Records
// a few hundred bytes long, appended in one write each, do not interleave.
func helperLogger(journalPath string, stderr io.Writer) *slog.Logger {
	c, err := helperLogConfig(journalPath)
	if err != nil || c.File == "" {
		h := logHandler(stderr, c, false)
		if f, ok := stderr.(*os.File); ok && stderrIsJournal(f, os.Getenv("JOURNAL_STREAM")) {
			// The helper of a service runs in a systemd unit of its own.
			h = journalHandler(stderr, c)
		}
		log := slog.New(h)
		if err != nil {
			log.Warn("logging to standard error", "err", err)
		}
		return log
	}
	return slog.New(logHandler(&appendFile{path: c.File}, c, false))
}

// helperLogConfig reads [LOG] of the configuration the journal at
// journalPath names.
func helperLogConfig(journalPath string) (LogConfig, error) {
	data, err := os.ReadFile(journalPath)
	if err != nil {
		return defaultLog, err
	}
	var jr struct {
		ConfigFile string `json:"config_file"`
	}
	if err := json.Unmarshal(data, &jr); err != nil {
		return defaultLog, fmt.Errorf("reading %s: %w", journalPath, err)
	}
	if jr.ConfigFile == "" {
		return defaultLog, fmt.Errorf("%s names no configuration", journalPath)
	}
	return loadLogConfig(jr.ConfigFile)
}

// loadLogConfig reads [LOG] alone from the AppServer.ini at path.
func loadLogConfig(path string) (LogConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return defaultLog, err
	}
	f, err := winini.LoadRepeats(data)
	if err != nil {
		return defaultLog, &ConfigError{File: path, Problem: "not a valid INI file: " + err.Error(), Err: err}
	}
	base, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return defaultLog, err
	}
	v := &validator{file: path, baseDir: base, uses: countKeys(data)}
	cfg := &Config{}
	v.log(f, cfg)
	if len(v.errs) > 0 {
		return defaultLog, errors.Join(v.errs...)
	}
	return cfg.Log, nil
}

// appendFile appends each write to the file at path, opening and closing
// it every time, so that it holds no handle that would stop another
// process rotating the file (Windows cannot rename an open file).
type appendFile struct {
	path string
	mu   sync.Mutex
}

func (a *appendFile) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f, err := os.OpenFile(a.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return 0, err
	}
	n, err := f.Write(p)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}
