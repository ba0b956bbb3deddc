package smartclient

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"testing"
	"time"
)

// helperArg, first on the test binary's command line, makes the binary a
// helper program of the tests instead of running them (see TestMain): a
// program that exists on every system, where the tests on Unix run sh.
const helperArg = "smartclient-test-helper"

// TestMain runs the tests, or the helper program when the binary was
// started as one (see HelperCommand).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == helperArg {
		os.Exit(runHelper(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// HelperCommand is the command line that runs the test binary as a helper
// program doing what words say, in order (see runHelper).
func HelperCommand(t testing.TB, words ...string) []string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("finding the test binary to run as a helper: %v", err)
	}
	return append([]string{exe, helperArg}, words...)
}

// runHelper does what words say, in order, in the working folder, and
// returns the exit code:
//
//	print TEXT          TEXT and a newline on stdout
//	need FILE           exit 1 unless FILE exists
//	copy FROM TO        copy the file FROM to TO
//	append FILE TEXT    TEXT and a newline at the end of FILE
//	sleep DURATION      wait (time.ParseDuration)
//	until FILE          wait until FILE exists
//	oninterrupt FILE    from now on, an interrupt (SIGINT, SIGTERM; on
//	                    Windows CTRL_BREAK_EVENT) appends "got TERM" to
//	                    FILE and exits 0
//	ignoreinterrupt     from now on, ignore interrupts
//	exit N              exit with N
//
// A mistake in words exits 100 with a message on stderr.
func runHelper(words []string) int {
	need := func(n int) []string {
		if len(words) < n {
			fmt.Fprintf(os.Stderr, "helper: %q needs %d arguments\n", words[0], n-1)
			os.Exit(100)
		}
		args := words[1:n]
		words = words[n:]
		return args
	}
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "helper: %v\n", err)
		return 100
	}
	for len(words) > 0 {
		switch words[0] {
		case "print":
			fmt.Println(need(2)[0])
		case "need":
			if _, err := os.Stat(need(2)[0]); err != nil {
				return 1
			}
		case "copy":
			a := need(3)
			b, err := os.ReadFile(a[0])
			if err == nil {
				err = os.WriteFile(a[1], b, 0o644)
			}
			if err != nil {
				return fail(err)
			}
		case "append":
			if err := appendLine(need(3)); err != nil {
				return fail(err)
			}
		case "sleep":
			d, err := time.ParseDuration(need(2)[0])
			if err != nil {
				return fail(err)
			}
			time.Sleep(d)
		case "until":
			for name := need(2)[0]; ; time.Sleep(50 * time.Millisecond) {
				if _, err := os.Stat(name); err == nil {
					break
				}
			}
		case "oninterrupt":
			mark := need(2)[0]
			c := make(chan os.Signal, 1)
			signal.Notify(c, interruptSignals...)
			go func() {
				<-c
				if err := appendLine([]string{mark, "got TERM"}); err != nil {
					os.Exit(fail(err))
				}
				os.Exit(0)
			}()
		case "ignoreinterrupt":
			need(1)
			signal.Ignore(interruptSignals...)
		case "exit":
			n, err := strconv.Atoi(need(2)[0])
			if err != nil {
				return fail(err)
			}
			return n
		default:
			return fail(fmt.Errorf("unknown word %q", words[0]))
		}
	}
	return 0
}

// appendLine appends the line a[1] to the file a[0].
func appendLine(a []string) error {
	f, err := os.OpenFile(a[0], os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(f, a[1])
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
