package releasecheck

import (
	"cmp"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
)

// Entry is one entry of a release: a file, a symbolic link (Target set)
// or an empty folder (Dir set), as both sides describe it.
type Entry struct {
	Path   string      // slash-separated, relative to the release's folder
	Size   int64       // a file's size; a link's is its target's length
	Mode   fs.FileMode // permission bits only; any other bit is refused
	Dir    bool        // an empty folder: no size, no target
	Target string      // a symbolic link's target; "" for a file or folder
}

// Problem is one reason why clients would refuse a release.
type Problem struct {
	// Path is the entry the problem is with; "" for the release as a
	// whole (too many entries).
	Path string
	// Reason says what is wrong, for example `"README.TXT" and
	// "readme.txt" are one file on Windows or macOS (...)`.
	Reason string
}

// String is the problem as Error lists it: the path, unless the reason
// already names it whole, and the reason.
func (p Problem) String() string {
	if p.Path == "" || strings.Contains(p.Reason, strconv.Quote(p.Path)) {
		return p.Reason
	}
	return strconv.Quote(p.Path) + ": " + p.Reason
}

// Error is a release that clients would refuse, with every problem found,
// each once, sorted by path and then reason.
type Error struct {
	Problems []Problem
}

// shownProblems is how many problems Error's text lists; the rest are
// counted.
const shownProblems = 10

// Error lists the first problems and counts the others.
func (e *Error) Error() string {
	var b strings.Builder
	n := len(e.Problems)
	if n == 1 {
		b.WriteString("clients would refuse the release: ")
	} else {
		fmt.Fprintf(&b, "clients would refuse the release for %d reasons: ", n)
	}
	for i, p := range e.Problems[:min(n, shownProblems)] {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.String())
	}
	if n > shownProblems {
		fmt.Fprintf(&b, "; and %d more", n-shownProblems)
	}
	return b.String()
}

// Check applies every rule to a whole release and returns nil, or an
// *Error with every problem it has (not only the first): each path's
// own (CheckPath), its mode (CheckMode) and size (CheckSize), two paths
// that are one file on Windows or macOS (FoldKey), an entry below a file,
// an empty folder or a link, a link that is absolute or leads out
// (CheckLinks), and the release's size in entries and path bytes. The
// result does not depend on the order of entries.
func Check(entries []Entry) error {
	var problems []Problem
	add := func(p, reason string) { problems = append(problems, Problem{Path: p, Reason: reason}) }
	pathBytes := 0
	// good holds the entries whose paths pass CheckPath, sorted by path:
	// the rules between entries only make sense of those.
	good := make([]*Entry, 0, len(entries))
	for i := range entries {
		e := &entries[i]
		pathBytes += len(e.Path)
		ok := true
		if err := CheckPath(e.Path); err != nil {
			add(e.Path, err.Error())
			ok = false
		}
		if err := CheckMode(uint32(e.Mode)); err != nil {
			add(e.Path, err.Error())
		}
		switch {
		case e.Size < 0:
			add(e.Path, fmt.Sprintf("declares %d bytes", e.Size))
		case e.Dir && e.Size != 0:
			add(e.Path, fmt.Sprintf("a folder that declares %d bytes", e.Size))
		default:
			if err := CheckSize(uint64(e.Size)); err != nil {
				add(e.Path, err.Error())
			}
		}
		if e.Dir && e.Target != "" {
			add(e.Path, fmt.Sprintf("a folder with a link target %q", e.Target))
			ok = false
		}
		if ok {
			good = append(good, e)
		}
	}
	problems = append(problems, limitProblems(len(entries), pathBytes)...)
	// In an order of their own, so that which of two entries is the
	// problem does not depend on the order they came in.
	slices.SortFunc(good, func(a, b *Entry) int {
		return cmp.Or(cmp.Compare(a.Path, b.Path), cmp.Compare(a.Target, b.Target), boolCmp(a.Dir, b.Dir))
	})

	// Two paths with one fold key are one file on Windows or macOS: the
	// later of them is the problem, naming the first.
	byKey := make(map[string]*Entry, len(good))
	keys := make([]string, len(good))
	firsts := make([]*Entry, 0, len(good)) // the first entry of each key
	for i, e := range good {
		key := FoldKey(e.Path)
		keys[i] = key
		first, dup := byKey[key]
		switch {
		case !dup:
			byKey[key] = e
			firsts = append(firsts, e)
		case first.Path == e.Path:
			add(e.Path, "is listed twice")
		default:
			add(e.Path, fmt.Sprintf("%q and %q are one file on Windows or macOS (%s)", first.Path, e.Path, SameFileWhy(first.Path, e.Path)))
		}
	}

	// The links, then a file, folder or link below a file or an empty
	// folder ("a" and "a/b", or "A/b"): every parent of every path is
	// looked up, rather than neighbours compared after sorting, which
	// misses "a", "a-b", "a/c".
	below := map[string]bool{}
	linkProblems(func(yield func(string, string) bool) {
		for _, e := range firsts {
			if !yield(e.Path, e.Target) {
				return
			}
		}
	}, func(p linkProblem) bool {
		if p.parent != "" {
			below[p.path] = true
		}
		add(p.path, p.reason())
		return true
	})
	for i, key := range keys {
		if below[good[i].Path] {
			continue
		}
		for j := strings.LastIndexByte(key, '/'); j > 0; j = strings.LastIndexByte(key[:j], '/') {
			if parent, ok := byKey[key[:j]]; ok {
				what := "a file"
				switch {
				case parent.Dir:
					what = "an empty folder"
				case parent.Target != "":
					what = "a symbolic link"
				}
				add(good[i].Path, fmt.Sprintf("%q is %s, and %q needs it to be a folder that holds it", parent.Path, what, good[i].Path))
				break
			}
		}
	}
	if len(problems) == 0 {
		return nil
	}
	slices.SortFunc(problems, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.Path, b.Path), cmp.Compare(a.Reason, b.Reason))
	})
	return &Error{Problems: slices.Compact(problems)}
}

// limitProblems are the problems of a release of n entries whose paths
// add up to pathBytes.
func limitProblems(n, pathBytes int) []Problem {
	var problems []Problem
	if n > MaxFiles {
		problems = append(problems, Problem{Reason: fmt.Sprintf("%d entries, over the limit of %d", n, MaxFiles)})
	}
	if pathBytes > MaxPathBytes {
		problems = append(problems, Problem{Reason: fmt.Sprintf("paths add up to more than %d bytes", MaxPathBytes)})
	}
	return problems
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}
