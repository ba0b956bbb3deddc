// Package desktop shows the progress of a sync, its failure and its one
// question in windows on the workstation's desktop, for a user who started
// smartclient from a shortcut and has no terminal to read.
//
// A Window is what the command line drives: Show a State (what is
// happening, files and bytes, a percentage), Ask a yes/no question, show an
// Error, Close. The user's Cancel (the button, Escape, the close box) calls
// the function given at Open once, from a goroutine of its own; the window
// then says "Cancelling…" until it is closed, since the sync stops at a safe
// point (the same path as Ctrl-C: the journal rolls back, or the step in
// hand completes) rather than at once. The package knows nothing of syncs:
// the words are the caller's.
//
// Two kinds of window:
//
//   - On Windows, OpenNative makes a plain Win32 window: CreateWindowEx with a
//     static text, a msctls_progress32 bar, a second text and a Cancel button,
//     run by its own message loop on a goroutine locked to its OS thread; the
//     sync's goroutines only store the State, which a 100 ms timer of that
//     thread draws. The question and the failure are MessageBoxW (MB_YESNO,
//     MB_ICONERROR) on the same thread. A task dialog (TaskDialogIndirect)
//     would need comctl32 version 6 to be loaded at all; the plain window
//     works with any comctl32, and is given the version 6 look (visual
//     styles) through an activation context made at run time from a
//     manifest, when the system allows it: if that fails the window only
//     looks older. The process is DPI aware and the layout scaled to the
//     screen's DPI, so that the window is crisp at 125% and above. It is
//     shown 400 ms after Open, so that a check that finds the install up to
//     date does not flash a window.
//   - Elsewhere, OpenZenity runs zenity --progress and writes percentages and
//     "# text" lines on its standard input; zenity ending before Close (its
//     Cancel, or its window closed) is the user's Cancel. The question and
//     the failure are zenity --question and zenity --error.
//
// Which kind, if any, a command uses is the command line's choice (see
// smartclient/internal/cli); this package gives it what it needs to choose:
// Interactive, whether the process can show windows to a user, and
// ConsoleBuild, whether it has a Windows console.
//
// Why two Windows builds. A console program started from a shortcut gets a
// new console window, which flashes and stays behind the progress window.
// smartclient.exe is the console build, for terminals, scripts and the
// scheduler; smartclientw.exe is the same program linked with
// -ldflags=-H=windowsgui, for shortcuts, as python.exe and pythonw.exe or
// java.exe and javaw.exe are. One GUI build that attaches to its parent's
// console (AttachConsole(ATTACH_PARENT_PROCESS)) was not chosen: cmd.exe does
// not wait for a GUI program, so its prompt comes back at once, the output
// lands after it, the exit code is lost to %ERRORLEVEL%, and the prompt's
// input is read by both.
package desktop
