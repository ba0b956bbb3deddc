package appserver

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/erpupdate/smartsync/internal/winini"
	"gopkg.in/ini.v1"
)

// LogConfig is the [LOG] section: where the server and its self-update
// helper write their logs, and in what form.
type LogConfig struct {
	// File is [LOG] File, absolute (a relative path is relative to the
	// folder of AppServer.ini); "" writes to standard error, as without a
	// [LOG] section. Keep it outside the installation folder: a
	// self-update swaps that folder, and a log inside it would be split
	// between the old and the new installation.
	File string
	// MaxSizeMB is [LOG] MaxSizeMB: the size at which File is rotated,
	// in megabytes (1..100000, default 100).
	MaxSizeMB int
	// MaxFiles is [LOG] MaxFiles: how many rotated files are kept
	// (0..100000, default 10; 0 keeps them all).
	MaxFiles int
	// MaxAgeDays is [LOG] MaxAgeDays: rotated files older than this many
	// days are removed (0..36500, default 0: no limit by age).
	MaxAgeDays int
	// Compress is [LOG] Compress: whether rotated files are gzipped.
	Compress bool
	// Format is [LOG] Format, "text" (key=value, the default) or "json"
	// (one JSON object a line).
	Format string
	// Level is [LOG] Level: debug, info (the default), warn or error;
	// records below it are not written.
	Level slog.Level
}

const (
	sectionLog = "LOG"

	keyLogFile    = "File"
	keyMaxSizeMB  = "MaxSizeMB"
	keyMaxFiles   = "MaxFiles"
	keyMaxAgeDays = "MaxAgeDays"
	keyCompress   = "Compress"
	keyFormat     = "Format"
	keyLevel      = "Level"
)

// logKeys are the keys of [LOG], which is ours.
var logKeys = []string{keyLogFile, keyMaxSizeMB, keyMaxFiles, keyMaxAgeDays, keyCompress, keyFormat, keyLevel}

// defaultLog is the [LOG] a file without the section has.
var defaultLog = LogConfig{MaxSizeMB: 100, MaxFiles: 10, Format: "text", Level: slog.LevelInfo}

// logLevels are the values of [LOG] Level.
var logLevels = map[string]slog.Level{
	"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError,
}

func (v *validator) log(f *ini.File, cfg *Config) {
	cfg.Log = defaultLog
	sec := section(f, sectionLog)
	if sec == nil {
		return
	}
	v.unknownKeys(sec, sectionLog, logKeys)
	if val, _, ok := v.value(sec, sectionLog, keyLogFile); ok && val != "" {
		if strings.ContainsRune(val, 0) || strings.HasSuffix(val, "/") || strings.HasSuffix(val, `\`) {
			v.add(sectionLog, keyLogFile, nil, "%q is not a file name", val)
		} else {
			cfg.Log.File = v.abs(val)
		}
	}
	for _, k := range []struct {
		key      string
		min, max int
		what     string
		set      *int
	}{
		{keyMaxSizeMB, 1, 100000, "number of megabytes", &cfg.Log.MaxSizeMB},
		{keyMaxFiles, 0, 100000, "number of files", &cfg.Log.MaxFiles},
		{keyMaxAgeDays, 0, 36500, "number of days", &cfg.Log.MaxAgeDays},
	} {
		val, _, ok := v.value(sec, sectionLog, k.key)
		if !ok || val == "" {
			continue
		}
		n, err := winini.Digits(val)
		if err != nil || n < k.min || n > k.max {
			v.add(sectionLog, k.key, err, "%q is not a %s from %d to %d", val, k.what, k.min, k.max)
			continue
		}
		*k.set = n
	}
	if val, _, ok := v.value(sec, sectionLog, keyCompress); ok && val != "" {
		b, err := winini.Bool(val)
		if err != nil {
			v.add(sectionLog, keyCompress, err, "%q is not a yes/no value; write 1 to gzip rotated files or 0 not to", val)
		}
		cfg.Log.Compress = b
	}
	if val, _, ok := v.value(sec, sectionLog, keyFormat); ok && val != "" {
		switch l := strings.ToLower(val); l {
		case "text", "json":
			cfg.Log.Format = l
		default:
			v.add(sectionLog, keyFormat, nil, "%q is not a log format; write text or json", val)
		}
	}
	if val, _, ok := v.value(sec, sectionLog, keyLevel); ok && val != "" {
		l, found := logLevels[strings.ToLower(val)]
		if !found {
			v.add(sectionLog, keyLevel, nil, "%q is not a log level; write debug, info, warn or error", val)
		}
		if found {
			cfg.Log.Level = l
		}
	}
}

// describe is how "appserver --check" reports where the logs go.
func (c LogConfig) describe() string {
	if c.File == "" {
		return fmt.Sprintf("standard error, %s, level %s", c.Format, strings.ToLower(c.Level.String()))
	}
	kept := fmt.Sprintf("%d rotated files kept", c.MaxFiles)
	if c.MaxFiles == 0 {
		kept = "every rotated file kept"
	}
	if c.MaxAgeDays > 0 {
		kept += fmt.Sprintf(" for at most %d days", c.MaxAgeDays)
	}
	if c.Compress {
		kept += ", gzipped"
	}
	return fmt.Sprintf("%s, %s, level %s; rotated at %d MB, %s", c.File, c.Format, strings.ToLower(c.Level.String()), c.MaxSizeMB, kept)
}
