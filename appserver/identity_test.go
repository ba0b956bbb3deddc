package appserver

import (
	"fmt"
	"testing"
)

func TestIdentities(t *testing.T) {
	type hello struct{ id, host, addr string }
	for _, tc := range []struct {
		name   string
		max    int
		hellos []hello
		clash  []bool   // per hello
		first  []string // per hello: the first host named on a clash
	}{
		{name: "one workstation, twice", hellos: []hello{{"a", "ws1", "10.0.0.1:1"}, {"a", "ws1", "10.0.0.1:2"}},
			clash: []bool{false, false}, first: []string{"", ""}},
		{name: "a clone", hellos: []hello{{"a", "ws1", "10.0.0.1:1"}, {"a", "ws2", "10.0.0.2:1"}, {"a", "ws1", "10.0.0.1:3"}, {"a", "ws2", "10.0.0.2:2"}},
			// The first host keeps the id; only the newcomer is told, each time.
			clash: []bool{false, true, false, true}, first: []string{"", "ws1", "", "ws1"}},
		{name: "two ids", hellos: []hello{{"a", "ws1", "x"}, {"b", "ws2", "y"}, {"b", "ws2", "y"}},
			clash: []bool{false, false, false}, first: []string{"", "", ""}},
		{name: "no host is not remembered", hellos: []hello{{"a", "", "x"}, {"a", "ws2", "y"}, {"a", "", "z"}},
			clash: []bool{false, false, false}, first: []string{"", "", ""}},
		{name: "no id is not remembered", hellos: []hello{{"", "ws1", "x"}, {"", "ws2", "y"}},
			clash: []bool{false, false}, first: []string{"", ""}},
		{name: "the oldest is forgotten past the bound", max: 2,
			hellos: []hello{{"a", "ws1", "x"}, {"b", "ws2", "y"}, {"c", "ws3", "z"}, {"a", "ws9", "w"}, {"c", "ws8", "v"}},
			clash:  []bool{false, false, false, false, true}, first: []string{"", "", "", "", "ws3"}},
		{name: "seeing an id again keeps it", max: 2,
			hellos: []hello{{"a", "ws1", "x"}, {"b", "ws2", "y"}, {"a", "ws1", "x"}, {"c", "ws3", "z"}, {"a", "ws9", "w"}},
			clash:  []bool{false, false, false, false, true}, first: []string{"", "", "", "", "ws1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ids := identities{max: tc.max}
			for i, h := range tc.hellos {
				first, clash := ids.see(h.id, h.host, h.addr)
				if clash != tc.clash[i] || first.host != tc.first[i] {
					t.Errorf("hello %d %+v: clash %v, first %q; want %v, %q", i, h, clash, first.host, tc.clash[i], tc.first[i])
				}
			}
		})
	}
}

func TestIdentitiesBounded(t *testing.T) {
	ids := identities{max: 1000}
	for i := range 5000 {
		ids.see(fmt.Sprint(i), "ws", "x")
	}
	if ids.ll.Len() != 1000 || len(ids.byID) != 1000 {
		t.Errorf("remembers %d (%d in the map); want 1000", ids.ll.Len(), len(ids.byID))
	}
}
