package ops

import (
	"net/http"

	"github.com/switchd/switchd/oauth"
)

// HandleLanes serves GET /v1/lanes: this node's lanes (lanes are per
// node, not replicated), their settings, open and signed-on connections
// and the certificates in use, as status reports them (the switch's lane
// status; ops does not import the front door).
func (s *Server) HandleLanes(status func() any) {
	s.handle("GET /v1/lanes", oauth.ScopeOpsRead, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"lanes": status()})
	})
}
