package ops

import (
	"errors"
	"net/http"

	"github.com/switchd/switchd/oauth"
)

// Lanes are per node, not replicated: these routes act on the node that
// serves them (the front door's lane status and reload; ops does not
// import the front door, main hands in the functions).
//
//	GET  /v1/lanes         {lanes: [status…]}
//	POST /v1/lanes/reload  {lanes: [{lane, reloaded, error}…]}   scope cluster:admin
//
// A reload re-reads the config file and gives every lane its allowlist
// and TLS files (certificate, key, client CA bundle), as SIGHUP does, for
// connections accepted from then on; established connections keep going.
// A lane whose new settings do not load keeps its old ones: the answer is
// then a lane-reload-failed problem (422) whose lanes member lists every
// lane's result, the others having reloaded all the same. The reload is
// recorded in the audit chain (lanes.reload, object node/<id>) after it
// happened, like a membership change.

// HandleLanes serves GET /v1/lanes: this node's lanes, their settings,
// open and signed-on connections and the certificates in use, as status
// reports them.
func (s *Server) HandleLanes(status func() any) {
	s.handle("GET /v1/lanes", oauth.ScopeOpsRead, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"lanes": status()})
	})
}

// HandleLaneReload serves POST /v1/lanes/reload on node: reload is what
// SIGHUP runs, and returns every lane's result and an error (wrapping
// outcome.ErrLaneReload) when a lane kept its old settings.
func (s *Server) HandleLaneReload(node string, reload func() (any, error)) {
	s.handle("POST /v1/lanes/reload", oauth.ScopeClusterAdmin, func(w http.ResponseWriter, r *http.Request) {
		adm, ok := s.requireActor(w, r)
		if !ok {
			return
		}
		var req struct{}
		if !decodeBody(w, r, &req, bodyBytesMax, true) {
			return
		}
		results, err := reload()
		// Recorded whatever the result: a partial reload changed lanes.
		s.auditMembership(r.Context(), adm, "lanes.reload", node, map[string]any{"lanes": results, "ok": err == nil})
		if err != nil {
			s.fail(w, &reloadError{err: err, lanes: results})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"lanes": results})
	})
}

// reloadError is a failed reload with every lane's result, which the
// problem document carries as its lanes member.
type reloadError struct {
	err   error
	lanes any
}

func (e *reloadError) Error() string { return e.err.Error() }
func (e *reloadError) Unwrap() error { return e.err }

// problemMembers are the extension members err's problem document carries.
func problemMembers(err error, doc map[string]any) {
	var re *reloadError
	if errors.As(err, &re) && re.lanes != nil {
		doc["lanes"] = re.lanes
	}
}
