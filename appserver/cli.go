package appserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/erpupdate/smartsync/appserver/release"
	"github.com/spf13/pflag"
)

// ErrUsage marks errors in the command line or configuration; the command
// exits 2 for them.
var ErrUsage = errors.New("usage or configuration error")

// Run is the appserver command: it parses args (without the program
// name), loads the configuration and serves until ctx is cancelled, or
// with --check validates and prints a summary. "appserver release ..." is
// the vendor's release tool instead (see package release), and "appserver
// passwd" prints an [ADMIN] PasswordHash line (see runPasswd).
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "release" {
		err := release.Run(ctx, args[1:], stdout, stderr)
		if errors.Is(err, release.ErrUsage) {
			err = fmt.Errorf("%w: %w", ErrUsage, err)
		}
		return err
	}
	if len(args) > 0 && args[0] == "passwd" {
		return runPasswd(args[1:], os.Stdin, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "selfupdate-helper" {
		return runHelper(ctx, args[1:], stderr)
	}
	fl := pflag.NewFlagSet("appserver", pflag.ContinueOnError)
	fl.SetOutput(stderr)
	config := fl.String("config", "AppServer.ini", "AppServer.ini to use")
	check := fl.Bool("check", false, "validate the configuration, index every update folder, print a summary and exit")
	state := fl.String("state", "", "folder for the server's state (hash caches); default: appserver-state beside the configuration")
	listen := fl.String("listen", "", "address to listen on, overriding [TCP] Port (e.g. 127.0.0.1:0)")
	if err := fl.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", ErrUsage, fl.Args())
	}
	cfg, err := LoadConfig(*config)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if *state == "" {
		*state = filepath.Join(filepath.Dir(*config), "appserver-state")
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	addr := *listen
	if addr == "" {
		addr = ":" + strconv.Itoa(cfg.Port)
	}
	self, err := findSelf(args, *config, *state, addr)
	if err != nil {
		return err
	}
	if !*check {
		if err := recoverSelfUpdate(log, self); err != nil {
			return err
		}
	}
	srv, err := New(ctx, log, cfg, *state)
	var ce *ConfigError
	if errors.As(err, &ce) {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if err != nil {
		return err
	}
	defer srv.Close()
	if *check {
		return printSummary(stdout, cfg, srv)
	}
	srv.SetSelf(self)
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	if err := srv.Serve(ctx, ln); err != nil {
		return err
	}
	if srv.HandedOver() {
		log.Warn("stopped for a self-update; the update helper takes over")
	}
	return nil
}

// findSelf describes the running installation: the executable's folder,
// its BUILD, and the command line to start the next server with.
func findSelf(args []string, config, state, listen string) (Self, error) {
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err != nil {
		return Self{}, fmt.Errorf("finding the server's program: %w", err)
	}
	wd, err := os.Getwd()
	if err != nil {
		return Self{}, fmt.Errorf("finding the working folder: %w", err)
	}
	self := Self{InstallDir: filepath.Dir(exe), Exe: exe, Args: args, WorkDir: wd, Listen: listen}
	if self.ConfigFile, err = filepath.Abs(config); err != nil {
		return Self{}, err
	}
	if self.StateDir, err = filepath.Abs(state); err != nil {
		return Self{}, err
	}
	self.Build = readOwnBuild(self.InstallDir)
	return self, nil
}

// readOwnBuild reads the BUILD file of an installation: the build of the
// server itself (AppServer.ini's [UPDATE] Build is the clients'). It is ""
// when there is none or it is not a build.
func readOwnBuild(dir string) string {
	data, err := os.ReadFile(filepath.Join(dir, "BUILD"))
	if err != nil || len(data) > 64 {
		return ""
	}
	b, err := ParseBuild(strings.TrimSpace(string(data)))
	if err != nil {
		return ""
	}
	return b.String()
}

func printSummary(w io.Writer, cfg *Config, srv *Server) error {
	fmt.Fprintf(w, "%s: configuration is valid; port %d, updates enabled: %v, build %s, oldest compatible client build %s\n",
		cfg.File, cfg.Port, cfg.Enable, orNone(cfg.Build.String()), orNone(cfg.MinClientBuild.String()))
	oses := make([]string, 0, len(srv.indexes))
	for o := range srv.indexes {
		oses = append(oses, o)
	}
	sort.Strings(oses)
	for _, o := range oses {
		ix := srv.indexes[o]
		m := ix.Latest()
		fmt.Fprintf(w, "%-8s %6d files %14s bytes  build %s  %s\n", o, len(m.Files), groupDigits(m.TotalBytes), m.Build, ix.Dir)
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// groupDigits writes n with thousands separators, as administrators read
// byte counts.
func groupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
