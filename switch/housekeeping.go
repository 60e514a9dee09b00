package switching

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/switchd/switchd/cluster"
	"github.com/switchd/switchd/payment"
	"github.com/switchd/switchd/store"
)

// Housekeeper periodically proposes OpExpire with the leader's clock: holds
// past their expiry are released and idempotency records past retention
// dropped. The time travels in the command, so every replica expires the
// same holds (DESIGN.md invariant 5).
type Housekeeper struct {
	ledger    payment.Ledger
	interval  time.Duration
	retention time.Duration
	now       func() time.Time
	log       *slog.Logger
	stop      chan struct{}
	done      chan struct{}
	once      sync.Once
}

// NewHousekeeper starts the ticker; Close stops it.
func NewHousekeeper(cfg Config, ledger payment.Ledger, logger *slog.Logger, now func() time.Time) *Housekeeper {
	if now == nil {
		now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &Housekeeper{
		ledger: ledger, interval: cfg.HousekeepingInterval, retention: cfg.IdempotencyRetention,
		now: now, log: logger, stop: make(chan struct{}), done: make(chan struct{}),
	}
	go h.run()
	return h
}

func (h *Housekeeper) run() {
	defer close(h.done)
	t := time.NewTicker(h.interval)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
			// Keep expiring while a run hit the per-command limit.
			for {
				n, err := h.Once(context.Background())
				if err != nil || n == 0 {
					break
				}
				select {
				case <-h.stop:
					return
				default:
				}
			}
		}
	}
}

// Once proposes one OpExpire now and returns how many holds and records it
// released. Followers return no error and do nothing.
func (h *Housekeeper) Once(ctx context.Context) (int, error) {
	now := h.now()
	ctx, cancel := context.WithTimeout(ctx, h.interval+5*time.Second)
	defer cancel()
	res, err := h.ledger.Propose(ctx, store.Command{
		Op:          store.OpExpire,
		Time:        now.UnixNano(),
		RetainAfter: now.Add(-h.retention).UnixNano(),
	})
	if errors.Is(err, cluster.ErrNotLeader) {
		return 0, nil
	}
	if err != nil {
		h.log.Warn("housekeeping failed", "err", err)
		return 0, err
	}
	if res.Expired > 0 || res.Pruned > 0 || res.Scrubbed > 0 {
		h.log.Info("housekeeping", "holds_expired", res.Expired, "idempotency_pruned", res.Pruned, "forward_cards_scrubbed", res.Scrubbed)
	}
	return res.Expired + res.Pruned, nil
}

// Close stops the ticker and waits for a run in progress.
func (h *Housekeeper) Close() {
	h.once.Do(func() { close(h.stop) })
	<-h.done
}
