package releasecheck

// A release comes from the network on the client, and from an
// administrator on the server: nothing in it is trusted. A name is refused
// if any of the three operating systems the client runs on could not hold
// it, or would take it for something else (a device, a drive, another
// file), whichever OS checks it: a release that installs on Linux but
// breaks the Windows workstations is found at once, not at the 500th.

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Limits of a release. MaxPath, MaxFiles and MaxPathBytes equal
// syncproto's MaxPath, MaxFiles and MaxManifestPathBytes (the client's
// manifest package fails to compile if they ever differ).
const (
	// MaxFileSize caps the size of one file. No file of an application
	// release comes near it, and a larger claim is a server lying to
	// make the client fill its disk.
	MaxFileSize = 64 << 30
	// MaxName is the longest name (one part of a path) in bytes: Linux
	// and macOS allow 255 bytes, Windows 255 UTF-16 units, which a name
	// of 255 UTF-8 bytes never exceeds.
	MaxName = 255
	// MaxPath is the longest path in bytes.
	MaxPath = 4096
	// MaxFiles is the most entries one release may have.
	MaxFiles = 1 << 20
	// MaxPathBytes bounds the paths of a whole release together.
	MaxPathBytes = 64 << 20
)

// The client's own bookkeeping in the install folder, which no release may
// name: its hidden folder, and the prefix of its backups (bkp_remote.001).
const (
	MetaDir      = ".smartclient"
	BackupPrefix = "bkp_remote."
)

// CheckSize accepts a file's size up to MaxFileSize.
func CheckSize(n uint64) error {
	if n > MaxFileSize {
		return fmt.Errorf("declares %d bytes, over the limit of %d bytes per file", n, int64(MaxFileSize))
	}
	return nil
}

// CheckMode accepts permission bits only. A server indexes regular files
// and sends their fs.FileMode permission bits; anything else is a lie: a
// type bit would have the client make a folder, link, device or pipe out
// of bytes, and setuid or setgid would hand whoever runs the file the
// rights of its owner, root for a system-wide install.
func CheckMode(m uint32) error {
	mode := fs.FileMode(m)
	switch {
	case mode&fs.ModeType != 0:
		return fmt.Errorf("mode %v is a special file (%s)", mode, typeName(mode))
	case mode&fs.ModeSetuid != 0 || m&0o4000 != 0:
		// 0o4000 and 0o2000 are how Unix spells them; a server that
		// sent its raw st_mode would mean the same.
		return fmt.Errorf("mode %#o is setuid", m)
	case mode&fs.ModeSetgid != 0 || m&0o2000 != 0:
		return fmt.Errorf("mode %#o is setgid", m)
	case m&^0o777 != 0:
		return fmt.Errorf("mode %#o has bits other than the permissions 0o777", m)
	}
	return nil
}

func typeName(m fs.FileMode) string {
	switch {
	case m&fs.ModeDir != 0:
		return "a folder"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "an irregular file"
}

// CheckPath accepts only clean, relative, slash-separated paths that stay
// inside the install folder, that Windows, macOS and Linux can all hold
// as an ordinary file, and that do not touch the client's bookkeeping.
// The error says what is wrong; the caller names the path.
func CheckPath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case len(p) > MaxPath:
		return fmt.Errorf("%d bytes long, limit %d", len(p), MaxPath)
	case !utf8.ValidString(p):
		return errors.New("not valid UTF-8")
	case strings.HasPrefix(p, `\\`) || strings.HasPrefix(p, "//") || strings.HasPrefix(p, `/\`) || strings.HasPrefix(p, `\/`):
		// \\server\share, \\?\C:\ and \\.\COM1 all leave the install
		// folder on Windows, and Windows reads either slash.
		return errors.New(`a UNC or device path (\\server\share, \\?\, \\.\)`)
	case p[0] == '/' || p[0] == '\\':
		return errors.New("an absolute path")
	case len(p) >= 2 && p[1] == ':' && isASCIILetter(p[0]):
		// "C:x" is relative to drive C's current folder: absolute
		// enough to leave the install folder.
		return fmt.Errorf("starts with the drive letter %s", p[:2])
	case strings.Contains(p, `\`):
		// Windows reads a backslash as a separator, so `a\..\..\x`
		// would climb out on Windows while looking like one name here.
		return errors.New("contains a backslash")
	}
	for part := range strings.SplitSeq(p, "/") {
		if err := CheckName(part); err != nil {
			return err
		}
	}
	if Reserved(p) {
		return fmt.Errorf("names the client's own bookkeeping (%s or %s*)", MetaDir, BackupPrefix)
	}
	return nil
}

// CheckName checks one part of a path. Every rule is one of Windows's
// (learnt from "Naming Files, Paths, and Namespaces"), macOS's or the
// client's; Linux allows everything else.
func CheckName(name string) error {
	switch name {
	case "":
		return errors.New("has an empty part (a//b, or a slash at the start or end)")
	case ".":
		return errors.New(`has a "." part; paths must be canonical`)
	case "..":
		return errors.New(`has a ".." part, which leaves its folder`)
	}
	if len(name) > MaxName {
		return fmt.Errorf("the name %.20q... is %d bytes long, limit %d", name, len(name), MaxName)
	}
	for _, r := range name {
		switch {
		case r < 0x20 || r == 0x7f:
			return fmt.Errorf("the name %q holds the control character %U", name, r)
		case strings.ContainsRune(`<>:"|?*`, r):
			return fmt.Errorf("the name %q holds %q, which Windows does not allow in names", name, r)
		case hfsIgnorable(r):
			return fmt.Errorf("the name %q holds the invisible character %U, which macOS ignores when it compares names", name, r)
		}
	}
	if last := name[len(name)-1]; last == '.' || last == ' ' {
		// Windows drops it, so "app.exe." would be "app.exe" there.
		return fmt.Errorf("the name %q ends with a dot or space, which Windows drops", name)
	}
	if dev := deviceName(name); dev != "" {
		return fmt.Errorf("the name %q is the Windows device %s", name, dev)
	}
	if shortNameAlias(name) {
		return fmt.Errorf("the name %q looks like a Windows 8.3 short name (like PROGRA~1), which can be another file's second name", name)
	}
	return nil
}

func isASCIILetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// windowsDevices are the names Windows opens as devices in any folder,
// whatever the letter case and whatever extension follows ("nul.txt" is
// NUL). COM and LPT take a digit 0-9 or a superscript 1-3.
var windowsDevices = []string{"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}

// deviceName returns the device a name would open on Windows, or "".
func deviceName(name string) string {
	stem, _, _ := strings.Cut(name, ".")
	// Windows also drops the spaces before an extension: "NUL .txt"
	// is NUL.
	stem = strings.TrimRight(stem, " ")
	for _, d := range windowsDevices {
		if strings.EqualFold(stem, d) {
			return d
		}
	}
	if len(stem) < 4 || !(strings.EqualFold(stem[:3], "COM") || strings.EqualFold(stem[:3], "LPT")) {
		return ""
	}
	switch suffix := stem[3:]; suffix {
	case "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "¹", "²", "³":
		return strings.ToUpper(stem[:3]) + suffix
	}
	return ""
}

// shortNameAlias reports whether name has the shape of a Windows 8.3
// short name, NAME~N.EXT. NTFS gives long names such a second name, so
// "SMARTC~1/state.bin" may be ".smartclient/state.bin" and
// "LIBSMA~1.SO" another entry under a name no duplicate check can see.
func shortNameAlias(name string) bool {
	if dot := strings.LastIndexByte(name, '.'); dot >= 0 {
		name = name[:dot]
	}
	tilde := strings.LastIndexByte(name, '~')
	if tilde < 0 || tilde == len(name)-1 {
		return false
	}
	for _, c := range name[tilde+1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// hfsIgnorable reports the code points that macOS's HFS+ leaves out when
// it compares names, so ".smart\u200cclient" is ".smartclient" there (the
// list git uses for the same attack, CVE-2014-9390). No release file
// name needs them.
func hfsIgnorable(r rune) bool {
	switch {
	case 0x200c <= r && r <= 0x200f, 0x202a <= r && r <= 0x202e, 0x206a <= r && r <= 0x206f, r == 0xfeff:
		return true
	}
	return false
}

// Reserved reports whether the slash path p names the client's
// bookkeeping (MetaDir, or a BackupPrefix backup) under any spelling that
// a case-insensitive or normalizing file system takes for it
// (".SmartClient", ".ſmartclient" with a long s).
func Reserved(p string) bool {
	first, _, _ := strings.Cut(p, "/")
	lower := strings.ToLower(first)
	if lower == MetaDir || strings.HasPrefix(lower, BackupPrefix) {
		return true
	}
	first = FoldKey(first)
	return first == FoldKey(MetaDir) || strings.HasPrefix(first, FoldKey(BackupPrefix))
}

// FoldKey returns a key under which two paths are equal when Windows or
// macOS would take them for the same file: equal under Unicode simple
// case folding (strings.EqualFold's rules, which strings.ToLower does not
// follow: "K" and the Kelvin sign, "σ" and "ς") or under canonical
// normalization (a precomposed "é" and "e" with a combining accent, as
// HFS+ stores it). It follows Unicode's canonical caseless match,
// NFD(fold(NFD(p))), with each rune folded to the smallest member of its
// folding orbit.
func FoldKey(p string) string {
	ascii := true
	for i := 0; i < len(p); i++ {
		if p[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		// The common case, and the same result: in ASCII the smallest
		// member of every orbit is the upper-case letter.
		return strings.ToUpper(p)
	}
	var b strings.Builder
	for _, r := range norm.NFD.String(p) {
		b.WriteRune(foldRune(r))
	}
	return norm.NFD.String(b.String())
}

// foldRune returns the smallest rune that unicode.SimpleFold reaches from
// r, the same for every member of r's orbit.
func foldRune(r rune) rune {
	least := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		least = min(least, f)
	}
	return least
}

// SameFileWhy says why two different paths with one fold key are one
// file, spelling out the code points when they look alike on screen.
func SameFileWhy(a, b string) string {
	if norm.NFC.String(a) == norm.NFC.String(b) {
		return fmt.Sprintf("the same letters, composed differently: %+q and %+q", a, b)
	}
	return "they differ only in letter case, or in letter case and composition"
}
