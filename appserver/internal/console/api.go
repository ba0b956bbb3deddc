package console

import (
	"net/http"
)

// The JSON API: the same data as the pages, for scripts. Errors are
// {"error": "..."} with the status of the failure.

func (c *Console) overviewAPI(w http.ResponseWriter, r *http.Request) {
	ov, err := c.o.Source.Overview(r.Context())
	if err != nil {
		status, msg := c.sourceError(r, "the overview", err)
		c.writeJSON(w, status, apiError{msg})
		return
	}
	// Lists are [] when empty, never null, for scripts.
	ov.Builds = nonNil(ov.Builds)
	ov.Failures = nonNil(ov.Failures)
	ov.Rollouts = nonNil(ov.Rollouts)
	ov.Stale = nonNil(ov.Stale)
	c.writeJSON(w, http.StatusOK, ov)
}

func nonNil[S ~[]E, E any](s S) S {
	if s == nil {
		return S{}
	}
	return s
}

// clientsAnswer is the answer of /api/clients.
type clientsAnswer struct {
	Total   int         `json:"total"`
	Offset  int         `json:"offset"`
	Limit   int         `json:"limit"`
	Clients []ClientRow `json:"clients"`
}

// clientsAPI takes the filter of the clients page, and limit and offset.
func (c *Console) clientsAPI(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f, err := parseFilter(q)
	if err == nil {
		f.Limit, err = parseInt(q, "limit", DefaultPageSize, 1, MaxPageSize)
	}
	if err == nil {
		f.Offset, err = parseInt(q, "offset", 0, 0, 1<<30)
	}
	if err != nil {
		c.jsonError(w, http.StatusBadRequest, err)
		return
	}
	list, err := c.o.Source.Clients(r.Context(), f)
	if err != nil {
		status, msg := c.sourceError(r, "the clients", err)
		c.writeJSON(w, status, apiError{msg})
		return
	}
	list.Clients = nonNil(list.Clients)
	c.writeJSON(w, http.StatusOK, clientsAnswer{Total: list.Total, Offset: f.Offset, Limit: f.Limit, Clients: list.Clients})
}

func (c *Console) clientAPI(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	cd, err := c.o.Source.Client(r.Context(), id)
	if err != nil {
		status, msg := c.sourceError(r, "client "+id, err)
		c.writeJSON(w, status, apiError{msg})
		return
	}
	cd.History = nonNil(cd.History)
	c.writeJSON(w, http.StatusOK, cd)
}

// releasesAnswer is the answer of /api/releases.
type releasesAnswer struct {
	Releases []Release `json:"releases"`
}

func (c *Console) releasesAPI(w http.ResponseWriter, r *http.Request) {
	rs, err := c.o.Source.Releases(r.Context())
	if err != nil {
		status, msg := c.sourceError(r, "the releases", err)
		c.writeJSON(w, status, apiError{msg})
		return
	}
	c.writeJSON(w, http.StatusOK, releasesAnswer{nonNil(rs)})
}

// serverAnswer is the answer of /api/server.
type serverAnswer struct {
	SelfUpdate SelfUpdate `json:"self_update"`
	Log        []LogLine  `json:"log"`
}

func (c *Console) serverAPI(w http.ResponseWriter, r *http.Request) {
	v, err := c.serverState(r)
	if err != nil {
		status, msg := c.sourceError(r, "the server's state", err)
		c.writeJSON(w, status, apiError{msg})
		return
	}
	c.writeJSON(w, http.StatusOK, serverAnswer{v.SelfUpdate, nonNil(v.Log)})
}
