package switching

import (
	"fmt"
	"strings"

	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/outcome"
	"github.com/switchd/switchd/payment"
	"github.com/switchd/switchd/store"
)

// Advices without an original (issue 13, docs/ADVICES.md): a 0220 or 0120
// with no field 90 reports a payment the acquirer already made (an OTC
// agent offline, or a partner's stand-in for an off-us card). The switch
// does not approve or decline the payment itself, only whether it takes
// the advice: 0230/0130 with 00, or the code of why not. A 0220 with field
// 90 keeps its meaning: the completion of the hold it names.

// isAdvice reports whether r, of message class class, is an advice
// without an original.
func isAdvice(r *codec.Request, class string) bool {
	return (class == "022" || class == "012") && r.Original == nil
}

// adviceKind is what an advice reports, by processing code: the payment
// kinds a financial request (0200) could have made.
func adviceKind(r *codec.Request) (payment.Kind, error) {
	switch r.ProcCode.Type {
	case codec.ProcPurchase:
		return payment.KindPurchase, nil
	case codec.ProcBillPay:
		return payment.KindBillPayment, nil
	case codec.ProcCash:
		return payment.KindCashWithdrawal, nil
	}
	return payment.KindUnknown, fmt.Errorf("%w: processing code %s on %s", outcome.ErrNotPermitted, r.ProcCode.Type, r.MTI)
}

// adviceIntent marks in as an advice. Its key adds the terminal to the
// acquirer's usual parts: terminals that work offline number their STANs
// themselves, so two of one acquirer may report the same STAN at the same
// second; the retransmission (0221/0121) has the same parts and class, so
// it finds the first. Its reference is the class's like any original, so
// a 0420 naming the advice in field 90 reverses it.
func adviceIntent(in *payment.Intent, r *codec.Request, class string) {
	in.Advice = true
	in.IdempotencyKey = strings.Join([]string{store.TrimZeros(r.Acquirer), r.STAN, r.TransmissionTime, r.RRN, r.Terminal, class}, "|")
	in.OriginalRef = originalRef(r.Acquirer, r.STAN, r.TransmissionTime, class)
}
