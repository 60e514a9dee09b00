package ops

import "net/http"

// HandleBillerReversals mounts h, the biller-side reversal endpoint
// (api.BillerReversals), on pattern. It is open to OAuth: h
// authenticates each call by its destination's Standard Webhooks
// signature before anything is proposed.
func (s *Server) HandleBillerReversals(pattern string, h http.Handler) {
	s.handleOpen(pattern, h.ServeHTTP)
}
