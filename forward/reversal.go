package forward

import (
	"context"
	"errors"
	"time"

	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/host"
	"github.com/switchd/switchd/outcome"
	"github.com/switchd/switchd/store"
)

// Host reversals (issue 13): an issuer host that takes back a request it
// approved sends us an 0420 naming our forward (field 37, our RRN: the
// forward number's last twelve digits). It is store.OpHostReversal, as a
// biller's webhook is (api/billers.go): the compensating transfer, the
// original marked reversed, the partner's payment.reversed event, in one
// apply; a repeat (0421, or the same 0420 again) changes nothing. The
// host gets its 0430 on the connection the 0420 came on: 00 reversed (or
// reversed already, or nothing had been posted), 25 no such original of
// this host's, 96 when it could not be recorded (the host sends it
// again).

// hostReversalTimeout bounds recording one host reversal.
const hostReversalTimeout = 10 * time.Second

// hostReverse records host dest's reversal s and answers it.
func (f *Forwarder) hostReverse(dest string, s host.Stray) {
	m := s.Message
	rrn := m.Get(37)
	rc := outcome.UnableToLocate
	if len(rrn) == 12 {
		id := "F00" + rrn
		ctx, cancel := context.WithTimeout(context.Background(), hostReversalTimeout)
		defer cancel()
		// The 0420's own identity (its STAN and transmission time): a
		// repeat of it is a replay; any other names the same original,
		// which store.OpHostReversal reverses at most once.
		event := "iso|" + m.Get(11) + "|" + m.Get(7)
		res, err := f.ledger.Propose(ctx, store.Command{Op: store.OpHostReversal, Key: "hrev|" + dest + "|" + id + "|" + event, Fingerprint: id,
			Time: f.opt.Now().UnixNano(), HostReversal: &store.HostReversal{Destination: dest, Forward: id, Source: store.HostReversalISO8583, Event: event}})
		switch {
		case err != nil:
			rc = outcome.SystemMalfunction
			f.log.Warn("host reversal not recorded; the host will send it again", "destination", dest, "forward", id, "err", err)
		case res.Status == store.StatusOK:
			rc = outcome.Approved
			f.log.Info("host reversed a forward", "destination", dest, "forward", id, "transfer", res.TransferID, "detail", res.Detail)
		case errors.Is(res.Status.Err(), store.ErrUnknownOriginal):
			rc = outcome.UnableToLocate
		default:
			rc = outcome.Code(res.Status.Err())
		}
	}
	ans := &codec.Message{}
	codec.BuildResponse(m, codec.Response{Code: rc}, ans)
	if ans.MTI == "" {
		ans.MTI = "0430"
	}
	if m.Has(90) {
		ans.Set(90, m.Get(90))
	}
	if err := s.Reply(ans); err != nil {
		f.log.Warn("host reversal answer not sent", "destination", dest, "err", err)
	}
}
