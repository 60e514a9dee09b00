package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/raft"

	"github.com/switchd/switchd/store"
)

// snapshotStore is raft's file snapshot store with one change: the
// snapshots this node takes are references to its applied state (the FSM
// persists store.SnapshotRefBytes, see store/snapshot.go), and Open turns
// a reference into a full stream of the live state, so a follower that
// needs a snapshot gets the ledger while no node copies its whole ledger
// every snapshot_threshold entries. Snapshots received from a leader are
// full streams already and pass through untouched.
type snapshotStore struct {
	*raft.FileSnapshotStore
	state stateOpener
}

// stateOpener opens a full stream of the live state (store.Store).
type stateOpener interface {
	OpenState() (*store.StateStream, error)
}

// errSnapshotBehind: the live state is older than a reference this node
// wrote, which only a restore of an older snapshot could cause.
var errSnapshotBehind = errors.New("cluster: live state is behind the snapshot reference")

// Open returns the snapshot's metadata and contents. For a reference the
// contents are the live state, whose applied index may be past meta.Index
// (a restored follower skips the log entries it already holds), and
// meta.Size is the stream's length.
func (s *snapshotStore) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	meta, rc, err := s.FileSnapshotStore.Open(id)
	if err != nil {
		return nil, nil, err
	}
	head := make([]byte, store.SnapshotRefBytes+1)
	n, err := io.ReadFull(rc, head)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		// Shorter than a reference plus one byte: a reference or nothing.
	case err != nil:
		rc.Close()
		return nil, nil, fmt.Errorf("cluster: snapshot %s: %w", id, err)
	}
	index, isRef := store.ParseSnapshotRef(head[:n])
	if !isRef {
		return meta, &prefixedReader{Reader: io.MultiReader(bytes.NewReader(head[:n]), rc), c: rc}, nil
	}
	rc.Close()
	st, err := s.state.OpenState()
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: snapshot %s: %w", id, err)
	}
	if st.Index() < index {
		st.Close()
		return nil, nil, fmt.Errorf("%w: snapshot %s names index %d, state at %d", errSnapshotBehind, id, index, st.Index())
	}
	m := *meta
	m.Size = st.Size()
	return &m, st, nil
}

// prefixedReader reads bytes already taken from c, then the rest of c.
type prefixedReader struct {
	io.Reader
	c io.Closer
}

func (p *prefixedReader) Close() error { return p.c.Close() }
