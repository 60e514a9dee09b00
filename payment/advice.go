package payment

import (
	"fmt"

	"github.com/switchd/switchd/outcome"
	"github.com/switchd/switchd/store"
)

// onUsAdvice makes cmd, the posting of an advice for an on-us card, an
// offline posting (store.Command.Offline): only an OTC agent reports cash
// it took offline, and the FSM counts it against the agent's offline limit
// (store/advice.go), refusing it with store.ErrOfflineLimit beyond it.
// Another partner's advice for an on-us card is refused (57): the switch
// is that card's issuer and never gave anyone stand-in authority.
func onUsAdvice(cmd *store.Command, dc decision) error {
	if dc.payerType != store.PayerOTCAgent {
		return fmt.Errorf("%w: an offline advice from payer type %s for an on-us card", outcome.ErrNotPermitted, dc.payerType)
	}
	if cmd.Op != store.OpPost {
		return fmt.Errorf("%w: an offline advice that does not post", outcome.ErrNotPermitted)
	}
	cmd.Offline = true
	return nil
}
