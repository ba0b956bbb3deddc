package releasecheck

import (
	"errors"
	"fmt"
	"iter"
	"path"
	"strings"
)

// maxLinkHops bounds how many links resolving one path may follow, as
// the kernel's own limit does.
const maxLinkHops = 40

// CheckLinks accepts the symbolic links of a release only if each is
// relative, no folder on its own path is a link (so making it never
// writes through another link), and following it, through the release's
// other links, stays inside the install folder. macOS frameworks need
// exactly such links (Core -> Versions/Current/Core, Versions/Current ->
// A). all yields every entry's path and link target ("" for a file or
// folder) and is ranged over twice; the error names the first problem.
func CheckLinks(all iter.Seq2[string, string]) error {
	var err error
	linkProblems(all, func(p linkProblem) bool {
		err = p.err()
		return false
	})
	return err
}

// linkProblem is one link problem: path lies below the link parent, or
// the link at path to target is absolute or leads out (why).
type linkProblem struct {
	path, parent, target string
	why                  error
}

// err is the problem as CheckLinks reports it.
func (p linkProblem) err() error {
	if p.parent != "" {
		return fmt.Errorf("%q lies below the symbolic link %q", p.path, p.parent)
	}
	return fmt.Errorf("symbolic link %q to %q: %w", p.path, p.target, p.why)
}

// reason is the problem as Check reports it, beside the path.
func (p linkProblem) reason() string {
	if p.parent != "" {
		return fmt.Sprintf("lies below the symbolic link %q", p.parent)
	}
	return fmt.Sprintf("symbolic link to %q: %v", p.target, p.why)
}

var errNotRelative = errors.New("only relative links inside the install folder are allowed")

// linkProblems calls yield with each problem of the links of all, in the
// order of all, until yield returns false.
func linkProblems(all iter.Seq2[string, string], yield func(linkProblem) bool) {
	links := map[string]string{}
	for p, target := range all {
		if target != "" {
			links[p] = target
		}
	}
	if len(links) == 0 {
		return
	}
	for p, t := range all {
		below := false
		for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
			if _, ok := links[dir]; ok {
				if !yield(linkProblem{path: p, parent: dir}) {
					return
				}
				below = true
				break
			}
		}
		if t == "" || below {
			continue
		}
		var why error
		if strings.ContainsAny(t, "\\:\x00") || path.IsAbs(t) {
			why = errNotRelative
		} else {
			why = resolveInside(links, p)
		}
		if why != nil && !yield(linkProblem{path: p, target: t, why: why}) {
			return
		}
	}
}

// resolveInside follows the link at p, component by component, through
// the release's links, and fails if the path ever leaves the install.
func resolveInside(links map[string]string, p string) error {
	hops := 0
	pending := strings.Split(p, "/")
	var done []string
	for len(pending) > 0 {
		part := pending[0]
		pending = pending[1:]
		switch part {
		case "", ".":
			continue
		case "..":
			if len(done) == 0 {
				return errors.New("it leads outside the install folder")
			}
			done = done[:len(done)-1]
			continue
		}
		cur := path.Join(append(done, part)...)
		target, isLink := links[cur]
		if !isLink {
			done = append(done, part)
			continue
		}
		if hops++; hops > maxLinkHops {
			return errors.New("too many levels of links")
		}
		pending = append(strings.Split(target, "/"), pending...)
	}
	return nil
}
