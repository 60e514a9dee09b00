package ops

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/switchd/switchd/cluster"
	"github.com/switchd/switchd/oauth"
)

// membershipTimeoutMax bounds a membership request: a configuration change
// commits in a few raft rounds unless the cluster has no quorum.
const membershipTimeoutMax = 40 * time.Second

// Membership is the cluster's membership side, on any node (a follower
// passes changes to the leader).
type Membership interface {
	// Join adds a node (checked first: it must answer at raftAddr as id)
	// as a non-voter and reports whether it was promoted to voter before
	// the wait ended; the leader promotes it once it has caught up.
	Join(ctx context.Context, id, raftAddr string) (voter bool, err error)
	Remove(ctx context.Context, id string) error
	TransferLeadership(ctx context.Context, id string) error
	// Snapshot takes a raft snapshot on this node and returns its index.
	Snapshot() (uint64, error)
	ClusterStatus(ctx context.Context, withHash bool) (cluster.ClusterStatus, error)
	StatusOf(withHash bool) cluster.Status
	// ReadIndex returns once the local ledger reflects every command
	// committed before the call.
	ReadIndex(ctx context.Context) error
}

// readIndexTimeoutMax bounds waiting for this node to catch up before a read.
const readIndexTimeoutMax = 10 * time.Second

// caughtUp makes a ledger read on this node linearizable (a follower waits
// until it applied what the leader had committed), or answers 503.
func (s *Server) caughtUp(w http.ResponseWriter, r *http.Request) bool {
	ctx, cancel := context.WithTimeout(r.Context(), readIndexTimeoutMax)
	defer cancel()
	if err := s.node.ReadIndex(ctx); err != nil {
		s.clusterFail(w, err)
		return false
	}
	return true
}

// JoinRequest is the body of POST /v1/cluster/join.
type JoinRequest struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	// Reason goes into the audit record (optional).
	Reason string `json:"reason,omitempty"`
}

// memberRequest is the body of remove and transfer-leadership.
type memberRequest struct {
	ID     string `json:"id"`
	Reason string `json:"reason,omitempty"`
}

func (s *Server) registerCluster(mux *http.ServeMux) {
	s.handle("GET /v1/cluster/status", oauth.ScopeOpsRead, s.status)
	s.handle("GET /v1/cluster/members", oauth.ScopeOpsRead, s.members)
	s.handle("POST /v1/cluster/join", oauth.ScopeClusterAdmin, s.join)
	s.handle("POST /v1/cluster/remove", oauth.ScopeClusterAdmin, s.remove)
	s.handle("POST /v1/cluster/transfer-leadership", oauth.ScopeClusterAdmin, s.transferLeadership)
	s.handle("POST /v1/cluster/snapshot", oauth.ScopeClusterAdmin, s.snapshot)
}

// snapshot takes a raft snapshot on this node (not cluster-wide: each
// node snapshots and truncates its own log). It changes no replicated
// state, so it is logged with its actor rather than audited.
func (s *Server) snapshot(w http.ResponseWriter, r *http.Request) {
	adm, ok := s.requireActor(w, r)
	if !ok {
		return
	}
	idx, err := s.node.Snapshot()
	if err != nil {
		s.clusterFail(w, err)
		return
	}
	s.log.Info("raft snapshot taken on request", "index", idx, "actor", adm.Actor, "remote", adm.Remote)
	writeJSON(w, http.StatusOK, map[string]uint64{"index": idx})
}

// withHash: the state hash reads the whole ledger; ?hash=false leaves it
// out for frequent polling.
func withHash(r *http.Request) bool { return r.URL.Query().Get("hash") != "false" }

// status is this node's own view, with its state hash.
func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.node.StatusOf(withHash(r)))
}

// members is every member's status, gathered by this node.
func (s *Server) members(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), writeTimeoutMax)
	defer cancel()
	cs, err := s.node.ClusterStatus(ctx, withHash(r))
	if err != nil {
		s.clusterFail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, cs)
}

func decodeMemberBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, bodyBytesMax))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		answer(w, badRequest("body must be one JSON object with known fields"))
		return false
	}
	return true
}

// Membership changes (join, remove, transfer-leadership) need cluster:admin
// and are audited once they succeeded (auditMembership); the answer's
// "audited" says whether the record was written.

func (s *Server) join(w http.ResponseWriter, r *http.Request) {
	adm, ok := s.requireActor(w, r)
	if !ok {
		return
	}
	var req JoinRequest
	if !decodeMemberBody(w, r, &req) {
		return
	}
	if req.ID == "" || req.RaftAddr == "" {
		answer(w, badRequest("id and raft_addr are required"))
		return
	}
	if host, port, err := net.SplitHostPort(req.RaftAddr); err != nil || host == "" || port == "" {
		answer(w, badRequest("raft_addr must be host:port"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), membershipTimeoutMax)
	defer cancel()
	voter, err := s.node.Join(ctx, req.ID, req.RaftAddr)
	if err != nil {
		s.clusterFail(w, err)
		return
	}
	adm.Reason = req.Reason
	status := "voter"
	if !voter {
		status = "nonvoter"
	}
	audited := s.auditMembership(ctx, adm, "cluster.join", req.ID, map[string]any{"id": req.ID, "raft_addr": req.RaftAddr, "status": status})
	if !voter {
		// A member, still catching up: the leader promotes it later.
		writeJSON(w, http.StatusAccepted, map[string]any{"status": status, "id": req.ID, "raft_addr": req.RaftAddr,
			"detail": "added as a non-voter; it becomes a voter once it has caught up", "audited": audited})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": status, "id": req.ID, "raft_addr": req.RaftAddr, "audited": audited})
}

func (s *Server) remove(w http.ResponseWriter, r *http.Request) {
	adm, ok := s.requireActor(w, r)
	if !ok {
		return
	}
	var req memberRequest
	if !decodeMemberBody(w, r, &req) {
		return
	}
	if req.ID == "" {
		answer(w, badRequest("id is required"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), membershipTimeoutMax)
	defer cancel()
	if err := s.node.Remove(ctx, req.ID); err != nil {
		s.clusterFail(w, err)
		return
	}
	adm.Reason = req.Reason
	audited := s.auditMembership(ctx, adm, "cluster.remove", req.ID, map[string]any{"id": req.ID, "status": "removed"})
	writeJSON(w, http.StatusOK, map[string]any{"status": "removed", "id": req.ID, "audited": audited})
}

func (s *Server) transferLeadership(w http.ResponseWriter, r *http.Request) {
	adm, ok := s.requireActor(w, r)
	if !ok {
		return
	}
	var req memberRequest
	if r.ContentLength != 0 && !decodeMemberBody(w, r, &req) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), membershipTimeoutMax)
	defer cancel()
	from := s.node.StatusOf(false).Leader
	if err := s.node.TransferLeadership(ctx, req.ID); err != nil {
		s.clusterFail(w, err)
		return
	}
	// Without an id raft picks the voter; the object names it when this
	// node already knows the new leader.
	to := req.ID
	if to == "" {
		if to = s.node.StatusOf(false).Leader; to == from {
			to = ""
		}
	}
	object := to
	if object == "" {
		object = "any"
	}
	adm.Reason = req.Reason
	audited := s.auditMembership(ctx, adm, "cluster.transfer-leadership", object, map[string]any{"from": from, "to": to})
	writeJSON(w, http.StatusOK, map[string]any{"status": "transferred", "id": req.ID, "audited": audited})
}

// clusterFail answers a cluster call's error through the one table.
func (s *Server) clusterFail(w http.ResponseWriter, err error) { s.fail(w, err) }

// RequestJoin asks the member whose ops API listens at opsAddr (host:port)
// to add this node; it retries until the member accepts (200: a voter;
// 202: a non-voter, promoted once caught up) or ctx ends, so a node may
// start before the member it joins through, and before the credentials
// file (a client with cluster:admin) exists: a new cluster's first node
// writes it once it has made its admin client. A refusal (400, 403, 409,
// 422: e.g. the leader cannot reach raftAddr, or the client lacks the
// scope) is final. The audit record names the credentials' client as the
// actor and this node in the reason.
func RequestJoin(ctx context.Context, opsAddr, id, raftAddr, credentials string) error {
	body, _ := json.Marshal(JoinRequest{ID: id, RaftAddr: raftAddr, Reason: "node " + id + " joins at start (cluster.join in its config)"})
	hc := &http.Client{Timeout: membershipTimeoutMax}
	base := "http://" + opsAddr
	var last error
	for {
		err := func() error {
			creds, err := oauth.ReadCredentials(credentials)
			if err != nil {
				return fmt.Errorf("credentials: %w", err)
			}
			tok, err := oauth.FetchToken(ctx, hc, base+"/oauth/token", creds, oauth.ScopeClusterAdmin)
			if err != nil {
				return err
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/cluster/join", bytes.NewReader(body))
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := hc.Do(req)
			if err != nil {
				return err
			}
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusAccepted {
				return nil // a voter, or a non-voter the leader promotes once caught up
			}
			err = fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(msg))
			switch resp.StatusCode {
			case http.StatusConflict, http.StatusBadRequest, http.StatusUnprocessableEntity, http.StatusForbidden:
				return &finalError{err} // retrying will not help
			}
			return err
		}()
		if err == nil {
			return nil
		}
		var fe *finalError
		if errors.As(err, &fe) {
			return fmt.Errorf("ops: join via %s: %w", opsAddr, fe.err)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("ops: join via %s: %w (last: %v)", opsAddr, ctx.Err(), last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

type finalError struct{ err error }

func (e *finalError) Error() string { return e.err.Error() }
