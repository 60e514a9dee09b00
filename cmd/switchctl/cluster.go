package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// switchctl cluster status | leader | join | remove | transfer-leadership | snapshot.
//
// Any member's ops API will do: a follower gathers the status of every
// member over the node-to-node connections and passes membership changes
// to the leader.

// clusterBodyBytesMax bounds a cluster answer (a few members).
const clusterBodyBytesMax = 1 << 20

type clusterStatus struct {
	Via     string `json:"via"`
	Leader  string `json:"leader"`
	Members []struct {
		ID       string `json:"id"`
		Address  string `json:"address"`
		Suffrage string `json:"suffrage"`
		Error    string `json:"error"`
		Lag      uint64 `json:"lag"`
		Status   *struct {
			State          string `json:"state"`
			Ready          bool   `json:"ready"`
			Term           uint64 `json:"term"`
			CommitIndex    uint64 `json:"commit_index"`
			AppliedIndex   uint64 `json:"applied_index"`
			FSMIndex       uint64 `json:"fsm_index"`
			StateIndex     uint64 `json:"state_index"`
			StateHashIndex uint64 `json:"state_hash_index"`
			StateHash      string `json:"state_hash"`
		} `json:"status"`
	} `json:"members"`
}

func clusterCmd(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usagef("cluster: want status, leader, join, remove, transfer-leadership or snapshot")
	}
	var o opsFlags
	fs := flag.NewFlagSet("switchctl cluster "+args[0], flag.ContinueOnError)
	o.register(fs)
	noHash := fs.Bool("no-hash", false, "leave out the state hashes (they read every node's whole ledger)")
	switch args[0] {
	case "status":
		pos, err := parseCmd(fs, args[1:], stdout)
		if err != nil {
			return err
		}
		if len(pos) > 0 {
			return usagef("cluster status: unexpected argument %q", pos[0])
		}
		return clusterStatusCmd(ctx, &o, stdout, !*noHash)
	case "leader":
		// The leader's id alone, for scripts (README: kill -9 the leader).
		if err := noArgs(fs, args, stdout); err != nil {
			return err
		}
		body, err := o.get(ctx, "/v1/cluster/status", url.Values{"hash": {"false"}})
		if err != nil {
			return err
		}
		var st struct {
			Leader string `json:"leader"`
		}
		if err := json.Unmarshal(body, &st); err != nil {
			return fmt.Errorf("decoding the status: %w", err)
		}
		if st.Leader == "" {
			return fmt.Errorf("no leader now (an election, or no quorum)")
		}
		fmt.Fprintln(stdout, st.Leader)
		return nil
	case "join":
		id := fs.String("id", "", "the new node's `id` (the node must be running)")
		addr := fs.String("raft-addr", "", "the new node's raft `host:port`, where it must answer as --id")
		reason := fs.String("reason", "", "why, for the audit chain")
		pos, err := parseCmd(fs, args[1:], stdout)
		if err != nil {
			return err
		}
		if len(pos) > 0 || *id == "" || *addr == "" {
			return usagef("cluster join: want --id ID --raft-addr HOST:PORT")
		}
		// The node must already be running: the leader checks that its
		// raft address answers as that id (else 422), adds it as a
		// non-voter and promotes it once it has caught up.
		_, b, err := o.call(ctx, http.MethodPost, "/v1/cluster/join", map[string]string{"id": *id, "raft_addr": *addr, "reason": *reason}, clusterBodyBytesMax)
		if err != nil {
			return err
		}
		if o.json {
			return printJSON(stdout, b)
		}
		var out struct {
			Status string `json:"status"`
		}
		if err := json.Unmarshal(b, &out); err != nil {
			return fmt.Errorf("cluster join: answer: %w", err)
		}
		if out.Status == "voter" {
			fmt.Fprintf(stdout, "%s (%s) is a voter\n", *id, *addr)
			return nil
		}
		fmt.Fprintf(stdout, "%s (%s) joined as a non-voter, still catching up; the leader makes it a voter once it has (cluster status shows its lag)\n", *id, *addr)
		return nil
	case "remove":
		reason := fs.String("reason", "", "why, for the audit chain")
		pos, err := parseCmd(fs, args[1:], stdout)
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return usagef("cluster remove: want one node id")
		}
		return clusterPost(ctx, &o, "/v1/cluster/remove", map[string]string{"id": pos[0], "reason": *reason}, stdout,
			fmt.Sprintf("%s is no longer a member", pos[0]))
	case "transfer-leadership":
		to := fs.String("to", "", "the node `id` to hand leadership to (default: any up-to-date voter)")
		reason := fs.String("reason", "", "why, for the audit chain")
		pos, err := parseCmd(fs, args[1:], stdout)
		if err != nil {
			return err
		}
		if len(pos) > 0 {
			return usagef("cluster transfer-leadership: unexpected argument %q", pos[0])
		}
		if err := clusterPost(ctx, &o, "/v1/cluster/transfer-leadership", map[string]string{"id": *to, "reason": *reason}, io.Discard, ""); err != nil {
			return err
		}
		if o.json {
			return nil
		}
		// The new leader serves after its Barrier: show it once it does.
		for i := 0; i < 50; i++ {
			_, b, err := o.call(ctx, http.MethodGet, "/v1/cluster/members?hash=false", nil, clusterBodyBytesMax)
			var cs clusterStatus
			if err == nil && json.Unmarshal(b, &cs) == nil && leaderReady(cs) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		fmt.Fprintln(stdout, "leadership transferred; now:")
		return clusterStatusCmd(ctx, &o, stdout, false)
	case "snapshot":
		pos, err := parseCmd(fs, args[1:], stdout)
		if err != nil {
			return err
		}
		if len(pos) > 0 {
			return usagef("cluster snapshot: unexpected argument %q", pos[0])
		}
		var out struct {
			Index uint64 `json:"index"`
		}
		_, b, err := o.call(ctx, http.MethodPost, "/v1/cluster/snapshot", nil, clusterBodyBytesMax)
		if err != nil {
			return err
		}
		if o.json {
			_, err := stdout.Write(b)
			return err
		}
		if err := json.Unmarshal(b, &out); err != nil {
			return fmt.Errorf("cluster snapshot: answer: %w", err)
		}
		fmt.Fprintf(stdout, "snapshot at index %d on this node\n", out.Index)
		return nil
	}
	return usagef("cluster: unknown command %q (want status, join, remove, transfer-leadership or snapshot)", args[0])
}

func clusterPost(ctx context.Context, o *opsFlags, path string, body any, stdout io.Writer, done string) error {
	_, b, err := o.call(ctx, http.MethodPost, path, body, clusterBodyBytesMax)
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(stdout, b)
	}
	if done != "" {
		fmt.Fprintln(stdout, done)
	}
	return nil
}

// clusterStatusCmd prints one row per member: role, term, indexes, lag and
// the state hash at the index it was taken (equal hashes at equal indexes
// mean byte-identical ledgers).
func clusterStatusCmd(ctx context.Context, o *opsFlags, stdout io.Writer, hash bool) error {
	path := "/v1/cluster/members"
	if !hash {
		path += "?hash=false"
	}
	_, body, err := o.call(ctx, http.MethodGet, path, nil, clusterBodyBytesMax)
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(stdout, body)
	}
	var cs clusterStatus
	if err := json.Unmarshal(body, &cs); err != nil {
		return fmt.Errorf("decoding cluster status: %w", err)
	}
	leader := cs.Leader
	if leader == "" {
		leader = "none"
	}
	ready := 0
	t := newTable("NODE", "ROLE", "READY", "TERM", "COMMIT", "APPLIED", "LAG", "HASH@INDEX", "RAFT ADDRESS").
		alignRight("TERM", "COMMIT", "APPLIED", "LAG")
	hashes := map[uint64]map[string]bool{}
	for _, m := range cs.Members {
		if m.Status == nil {
			t.add(m.ID, "unreachable", "-", "-", "-", "-", "-", "-", m.Address)
			continue
		}
		s := m.Status
		if s.Ready {
			ready++
		}
		hash := "-"
		if s.StateHash != "" {
			hash = s.StateHash[:16] + "@" + strconv.FormatUint(s.StateHashIndex, 10)
			if hashes[s.StateHashIndex] == nil {
				hashes[s.StateHashIndex] = map[string]bool{}
			}
			hashes[s.StateHashIndex][s.StateHash] = true
		}
		role := s.State
		if m.Suffrage == "Nonvoter" {
			role += " (non-voter)" // joined, not yet caught up
		}
		t.add(m.ID, role, yesNo(s.Ready), strconv.FormatUint(s.Term, 10), strconv.FormatUint(s.CommitIndex, 10),
			strconv.FormatUint(max(s.StateIndex, s.FSMIndex), 10), strconv.FormatUint(m.Lag, 10), hash, m.Address)
	}
	fmt.Fprintf(stdout, "cluster of %d (asked %s): leader %s, %d ready\n", len(cs.Members), cs.Via, leader, ready)
	if err := t.write(stdout); err != nil {
		return err
	}
	for idx, set := range hashes {
		if len(set) > 1 {
			fmt.Fprintf(stdout, "WARNING: members disagree on the state hash at index %d\n", idx)
		}
	}
	return nil
}

func leaderReady(cs clusterStatus) bool {
	for _, m := range cs.Members {
		if m.ID == cs.Leader && m.Status != nil && m.Status.Ready {
			return true
		}
	}
	return false
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
