package console

import (
	"cmp"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// pageNames are the templates under templates/, each with the layout.
var pageNames = []string{"overview", "clients", "client", "releases", "server", "login", "error"}

func parsePages(funcs template.FuncMap) (map[string]*template.Template, error) {
	pages := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(files, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: parsing the template of page %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

func (c *Console) funcs() template.FuncMap {
	return template.FuncMap{
		// when is a time as shown, in the console's zone; "" for zero.
		"when": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.In(c.o.Location).Format("2006-01-02 15:04")
		},
		// iso is a time for a datetime attribute.
		"iso": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.UTC().Format(time.RFC3339)
		},
		// ago is how long ago t was, roughly.
		"ago": func(t time.Time) string {
			if t.IsZero() {
				return "never"
			}
			return ago(c.o.Now().Sub(t))
		},
		"bytes": humanBytes,
		"dur": func(d time.Duration) string {
			switch {
			case d < time.Second:
				return d.Round(time.Millisecond).String()
			case d < time.Minute:
				return d.Round(100 * time.Millisecond).String()
			}
			return d.Round(time.Second).String()
		},
		"clientURL": func(id string) string { return "/clients/" + url.PathEscape(id) },
	}
}

// ago is a duration as "5 min ago".
func ago(d time.Duration) string {
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%d s ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d/time.Hour))
	}
	return fmt.Sprintf("%d days ago", int(d/(24*time.Hour)))
}

// humanBytes is n in B, KiB, MiB or GiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 3; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGT"[exp])
}

// buildTable is the clients per build (rows) and OS (columns).
type buildTable struct {
	OSes []string
	Rows []buildRow
}

type buildRow struct {
	Build  string
	Counts []int // per OS of OSes
	Total  int
}

func pivotBuilds(bc []BuildCount) buildTable {
	var t buildTable
	for _, b := range bc {
		if !slices.Contains(t.OSes, b.OS) {
			t.OSes = append(t.OSes, b.OS)
		}
	}
	slices.Sort(t.OSes)
	index := map[string]int{}
	for _, b := range bc {
		i, ok := index[b.Build]
		if !ok {
			i = len(t.Rows)
			index[b.Build] = i
			t.Rows = append(t.Rows, buildRow{Build: b.Build, Counts: make([]int, len(t.OSes))})
		}
		t.Rows[i].Counts[slices.Index(t.OSes, b.OS)] += b.Clients
		t.Rows[i].Total += b.Clients
	}
	return t
}

type overviewView struct {
	Overview
	Table buildTable
}

func (c *Console) overviewPage(w http.ResponseWriter, r *http.Request) {
	ov, err := c.o.Source.Overview(r.Context())
	d := pageData{Title: "Overview", Nav: "overview", Body: overviewView{Overview: ov, Table: pivotBuilds(ov.Builds)}}
	status := http.StatusOK
	if err != nil {
		status, d.Err = c.sourceError(r, "the overview", err)
	}
	c.render(w, r, status, "overview", d)
}

// queryError is a bad query parameter.
type queryError struct {
	Param, Value, Want string
}

func (e *queryError) Error() string {
	return fmt.Sprintf("query parameter %s=%q: %s", e.Param, e.Value, e.Want)
}

// parseFilter reads the clients filter from a query: q, failed, build,
// os, stale (days, "7" or "7d"), sort, desc.
func parseFilter(q url.Values) (ClientFilter, error) {
	f := ClientFilter{
		Search: strings.TrimSpace(q.Get("q")),
		Build:  strings.TrimSpace(q.Get("build")),
		OS:     strings.TrimSpace(q.Get("os")),
		Sort:   q.Get("sort"),
	}
	for _, p := range []struct {
		name string
		v    string
	}{{"q", f.Search}, {"build", f.Build}, {"os", f.OS}} {
		if len(p.v) > 200 {
			return f, &queryError{p.name, p.v[:20] + "...", "longer than 200 bytes"}
		}
	}
	var err error
	if f.FailedOnly, err = parseBool(q, "failed"); err != nil {
		return f, err
	}
	if f.Desc, err = parseBool(q, "desc"); err != nil {
		return f, err
	}
	if s := strings.TrimSpace(q.Get("stale")); s != "" {
		n, err := strconv.Atoi(strings.TrimSuffix(s, "d"))
		if err != nil || n < 0 || n > 36500 {
			return f, &queryError{"stale", s, "want a number of days from 0 to 36500, such as 7 or 7d"}
		}
		f.StaleDays = n
	}
	if f.Sort == "" {
		f.Sort = SortHost
	}
	if !slices.Contains(SortColumns, f.Sort) {
		return f, &queryError{"sort", f.Sort, "want one of " + strings.Join(SortColumns, ", ")}
	}
	return f, nil
}

func parseBool(q url.Values, name string) (bool, error) {
	switch v := q.Get(name); v {
	case "", "0", "false", "off":
		return false, nil
	case "1", "true", "on":
		return true, nil
	default:
		return false, &queryError{name, v, "want 1 or 0"}
	}
}

// parseInt reads a whole number from lo to hi, def when absent.
func parseInt(q url.Values, name string, def, lo, hi int) (int, error) {
	s := q.Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, &queryError{name, s, fmt.Sprintf("want a whole number from %d to %d", lo, hi)}
	}
	return n, nil
}

// filterQuery is the query string of f, without paging.
func filterQuery(f ClientFilter) url.Values {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("q", f.Search)
	if f.FailedOnly {
		q.Set("failed", "1")
	}
	set("build", f.Build)
	set("os", f.OS)
	if f.StaleDays > 0 {
		q.Set("stale", strconv.Itoa(f.StaleDays))
	}
	if f.Sort != SortHost {
		q.Set("sort", f.Sort)
	}
	if f.Desc {
		q.Set("desc", "1")
	}
	return q
}

// clientsHref is the link to the clients table with query q.
func clientsHref(q url.Values) string {
	if len(q) == 0 {
		return "/clients"
	}
	return "/clients?" + q.Encode()
}

type column struct {
	Key, Label, Href string
	Sorted, Desc     bool
}

var columnLabels = map[string]string{
	SortHost: "Host", SortUser: "User", SortOS: "OS", SortBuild: "Build", SortRelease: "Release",
	SortRing: "Ring", SortLastSeen: "Last seen", SortOutcome: "Last outcome",
}

type clientsView struct {
	Filter   ClientFilter
	List     ClientList
	Columns  []column
	Page     int
	Pages    int
	First    int // the number of the first row shown
	Last     int
	PrevHref string
	NextHref string
	OSes     []string
}

func (c *Console) clientsPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f, err := parseFilter(q)
	d := pageData{Title: "Clients", Nav: "clients"}
	v := clientsView{Filter: f, OSes: []string{"windows", "linux", "darwin"}}
	page := 1
	if err == nil {
		page, err = parseInt(q, "page", 1, 1, 1_000_000)
	}
	if err != nil {
		d.Err, d.Body = err.Error(), v
		c.render(w, r, http.StatusBadRequest, "clients", d)
		return
	}
	f.Limit, f.Offset = DefaultPageSize, (page-1)*DefaultPageSize
	list, err := c.o.Source.Clients(r.Context(), f)
	status := http.StatusOK
	if err != nil {
		status, d.Err = c.sourceError(r, "the clients", err)
	}
	v.Filter, v.List, v.Page = f, list, page
	v.Pages = max(1, (list.Total+DefaultPageSize-1)/DefaultPageSize)
	if len(list.Clients) > 0 {
		v.First, v.Last = f.Offset+1, f.Offset+len(list.Clients)
	}
	for _, k := range SortColumns {
		col := column{Key: k, Label: columnLabels[k], Sorted: f.Sort == k, Desc: f.Sort == k && f.Desc}
		hq := filterQuery(f)
		hq.Del("sort")
		hq.Del("desc")
		if k != SortHost {
			hq.Set("sort", k)
		}
		if col.Sorted && !f.Desc {
			hq.Set("desc", "1")
		}
		col.Href = clientsHref(hq)
		v.Columns = append(v.Columns, col)
	}
	pageHref := func(p int) string {
		pq := filterQuery(f)
		if p > 1 {
			pq.Set("page", strconv.Itoa(p))
		}
		return clientsHref(pq)
	}
	if page > 1 {
		v.PrevHref = pageHref(page - 1)
	}
	if f.Offset+len(list.Clients) < list.Total {
		v.NextHref = pageHref(page + 1)
	}
	if f.OS != "" && !slices.Contains(v.OSes, f.OS) {
		v.OSes = append(v.OSes, f.OS)
	}
	d.Body = v
	c.render(w, r, status, "clients", d)
}

func (c *Console) clientPage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	cd, err := c.o.Source.Client(r.Context(), id)
	d := pageData{Title: "Client " + id, Nav: "clients", Body: cd}
	status := http.StatusOK
	if err != nil {
		status, d.Err = c.sourceError(r, "client "+id, err)
		d.Body = ClientDetail{ClientRow: ClientRow{ID: id}}
	}
	c.render(w, r, status, "client", d)
}

// osReleases are the releases of one OS.
type osReleases struct {
	OS       string
	Releases []Release
}

func groupReleases(rs []Release) []osReleases {
	var g []osReleases
	for _, r := range rs {
		i := slices.IndexFunc(g, func(o osReleases) bool { return o.OS == r.OS })
		if i < 0 {
			i = len(g)
			g = append(g, osReleases{OS: r.OS})
		}
		g[i].Releases = append(g[i].Releases, r)
	}
	slices.SortStableFunc(g, func(a, b osReleases) int { return cmp.Compare(a.OS, b.OS) })
	return g
}

func (c *Console) releasesPage(w http.ResponseWriter, r *http.Request) {
	rs, err := c.o.Source.Releases(r.Context())
	d := pageData{Title: "Releases", Nav: "releases", Body: groupReleases(rs)}
	status := http.StatusOK
	if err != nil {
		status, d.Err = c.sourceError(r, "the releases", err)
	}
	c.render(w, r, status, "releases", d)
}

type serverView struct {
	SelfUpdate SelfUpdate
	Log        []LogLine
}

// serverState reads the self-update state and the log, both even when
// one fails; the error names the first that failed.
func (c *Console) serverState(r *http.Request) (serverView, error) {
	var v serverView
	su, err1 := c.o.Source.SelfUpdate(r.Context())
	if err1 != nil {
		err1 = fmt.Errorf("the self-update state: %w", err1)
	}
	lines, err2 := c.o.Source.RecentLog(r.Context(), LogLines)
	if err2 != nil {
		err2 = fmt.Errorf("the log: %w", err2)
	}
	v.SelfUpdate, v.Log = su, lines
	return v, cmp.Or(err1, err2)
}

func (c *Console) serverPage(w http.ResponseWriter, r *http.Request) {
	v, err := c.serverState(r)
	d := pageData{Title: "Server", Nav: "server", Body: v}
	status := http.StatusOK
	if err != nil {
		status, d.Err = c.sourceError(r, "the server's state", err)
	}
	c.render(w, r, status, "server", d)
}

type loginView struct {
	CSRF string
	Next string
	User string
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	next := r.URL.Query().Get("next")
	if !localPath(next) {
		next = "/"
	}
	if !c.o.RequireLogin || c.auth.session(r) != nil {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	c.showLogin(w, r, http.StatusOK, "", "", next)
}

// showLogin renders the login form, with a pre-session cookie that its
// CSRF token is tied to.
func (c *Console) showLogin(w http.ResponseWriter, r *http.Request, status int, msg, user, next string) {
	pre := ""
	if ck, err := r.Cookie(cookieName(r, loginCookie)); err == nil && len(ck.Value) == 43 {
		pre = ck.Value
	} else {
		pre = randomToken()
		c.auth.setCookie(w, r, loginCookie, pre, time.Hour)
	}
	c.render(w, r, status, "login", pageData{Title: "Log in", Err: msg, Body: loginView{CSRF: c.auth.token("login", pre), Next: next, User: user}})
}

func (c *Console) loginPost(w http.ResponseWriter, r *http.Request) {
	next := r.PostForm.Get("next")
	if !localPath(next) {
		next = "/"
	}
	if !c.o.RequireLogin {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	user := r.PostForm.Get("user")
	if status, msg, wait := c.checkLogin(r, user, r.PostForm.Get("password"), "form"); status != 0 {
		if wait > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(waitSeconds(wait)))
		}
		c.showLogin(w, r, status, msg, user, next)
		return
	}
	c.auth.endSession(r) // a new login is a new session
	s := c.auth.newSession(user)
	c.auth.setCookie(w, r, sessionCookie, s.id, c.o.MaxAge)
	c.auth.setCookie(w, r, loginCookie, "", -1)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (c *Console) logoutPost(w http.ResponseWriter, r *http.Request) {
	c.auth.endSession(r)
	c.auth.setCookie(w, r, sessionCookie, "", -1)
	to := "/login"
	if !c.o.RequireLogin {
		to = "/"
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}
