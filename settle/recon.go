package settle

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/switchd/switchd/currency"
	"github.com/switchd/switchd/store"
)

// Break codes and their owners (DESIGN.md "Formats we emit").
const (
	B1 = "B1" // in the partner's (or biller's) file, missing in our ledger — Ops
	B2 = "B2" // in our ledger, missing at the biller — Eng
	B3 = "B3" // amount mismatch — Partner ops
	B4 = "B4" // status mismatch — Eng
	B5 = "B5" // currency or date mismatch — Ops
)

// BreakCodes in report order.
var BreakCodes = []string{B1, B2, B3, B4, B5}

// Owners of each break code.
var Owners = map[string]string{B1: "Ops", B2: "Eng", B3: "Partner ops", B4: "Eng", B5: "Ops"}

// Side is one source's view of a transaction in a break.
type Side struct {
	Row      int    `json:"row,omitempty"`         // file row (1 = header)
	Transfer string `json:"transfer_id,omitempty"` // ledger
	Amount   string `json:"amount,omitempty"`
	Currency string `json:"currency,omitempty"`
	Day      string `json:"day,omitempty"`
	Status   string `json:"status,omitempty"`
}

// Break is one difference between the sources.
type Break struct {
	ID      string `json:"id"`
	Code    string `json:"code"`
	Owner   string `json:"owner"`
	Source  string `json:"source"` // partner or biller: which file the ledger was compared with
	Partner string `json:"partner"`
	RRN     string `json:"rrn"`
	STAN    string `json:"stan"`
	Detail  string `json:"detail"`
	Ours    *Side  `json:"ledger,omitempty"`
	Theirs  *Side  `json:"file,omitempty"`
	// State, Assignee and Note come from the replicated break state.
	State    string `json:"state"`
	Assignee string `json:"assignee,omitempty"`
	Note     string `json:"note,omitempty"`
}

// ReconResult is the outcome of one reconciliation.
type ReconResult struct {
	ID      string `json:"id"`
	Day     string `json:"day"`
	Partner string `json:"partner"`
	// Biller is the biller the biller file is from, as the run named it
	// (an http destination or an on-us biller account); empty: every
	// biller (billerScope).
	Biller string `json:"biller,omitempty"`
	// Rows read from each source; ledger counts the partner's transfers
	// of the day (matching also looks ToleranceDays around it).
	PartnerRows int `json:"partner_rows"`
	BillerRows  int `json:"biller_rows"`
	LedgerRows  int `json:"ledger_rows"`
	// Matched counts file rows that found their ledger transfer with no
	// difference (partner and biller rows alike).
	Matched int            `json:"matched"`
	Counts  map[string]int `json:"counts"`
	Breaks  []Break        `json:"breaks,omitempty"`
}

// ledgerRow is one of our transfers as reconciliation sees it (small: a
// million are held at once).
type ledgerRow struct {
	key    string // rrn \x00 stan
	id     string
	amount int64
	next   int32  // the next row with the same key, -1 at the end
	ccy    uint16 // symbols code
	day    uint16 // symbols code
	status byte
	// biller: the biller's file must have this transfer (B2 if not):
	// billerNone, or which kind of biller's it is.
	biller billerKind
	// dest: symbols code of the http destination's id (biller
	// billerDest or billerDestReversal).
	dest uint16
	// reversal: a compensating transfer (OpReverse). One a destination
	// made (op 29) has its original's rrn and stan.
	reversal bool
	// matched by a row of the partner's / the biller's file.
	byPartner, byBiller bool
}

func (r *ledgerRow) rrn() string  { v, _, _ := strings.Cut(r.key, "\x00"); return v }
func (r *ledgerRow) stan() string { _, v, _ := strings.Cut(r.key, "\x00"); return v }

// billerKind says why the biller's file must have a ledger row.
type billerKind byte

const (
	billerNone billerKind = iota
	// billerLedger: posted to an on-us biller account (kind biller).
	billerLedger
	// billerDest: paid to an http destination (credited to its
	// settlement account): the biller accepted it, its file must say so.
	billerDest
	// billerDestReversal: a reversal taking a payment back from an http
	// destination's settlement account — the destination's own (op 29),
	// or a partner's that the biller was to be told of. Its file must
	// have it too: otherwise the biller counts money we gave back.
	billerDestReversal
)

// billerScope says which of our transfers the biller's file must have
// (B2). A run uploads one biller file; it names the biller the file is
// from, or none (Service.resolveBiller resolves the name):
//
//   - none: the file covers every biller — transfers credited to any
//     account of kind biller (on-us billers, as before http billers) and
//     every http destination's payments and their reversals;
//   - an http destination's id (or its settlement account's id): only
//     that destination's payments and their reversals;
//   - an account of kind biller: only what was posted to it.
//
// Naming the biller keeps one biller's file from reporting every other
// biller's payments as B2. The file's rows are matched with any of the
// partner's transfers by rrn and stan either way (as before): the scope
// says which of ours the file must have, not which rows it may hold.
//
// The zero value is "every account of kind biller, no http destination".
type billerScope struct {
	// named: the run named its biller, so no account is in scope for its
	// kind alone; account is the named on-us biller account (empty when
	// the named biller is an http destination).
	named   bool
	account string
	// dests maps the settlement account of each http destination in
	// scope to the destination's id; store bounds destinations at 256.
	dests map[string]string
}

// ReconLedger is what reconciliation reads.
type ReconLedger interface {
	Scanner
}

// reconInput is a reconciliation's parameters and parsed files.
type reconInput struct {
	id, day, partner string
	biller           string // as the run named it; billers is what it resolved to
	toleranceDays    int
	partnerRows      []fileRow
	billerRows       []fileRow
	billers          billerScope
	sym              *symbols // codes of the files' and the ledger's currencies, days and destinations
}

// loadLedger reads the partner's transfers of day ± tolerance.
func loadLedger(ctx context.Context, l ReconLedger, in *reconInput) ([]ledgerRow, map[string]int32, error) {
	d0, err := time.Parse(time.DateOnly, in.day)
	if err != nil {
		return nil, nil, err
	}
	var rows []ledgerRow
	index := map[string]int32{}  // key → first row; rows chain through next
	last := map[string]int32{}   // key → last row, only for keys seen twice
	billers := map[string]bool{} // account id → is of kind biller
	sym, scope := in.sym, &in.billers
	for off := -in.toleranceDays; off <= in.toleranceDays; off++ {
		day := d0.AddDate(0, 0, off).Format(time.DateOnly)
		err := l.ScanTransfers(ctx, store.TransferFilter{BusinessDay: day, Partner: in.partner}, func(t, _ *store.Transfer, v *store.ScanView) error {
			st := statusOK
			if t.Op == store.OpAuthorize {
				st = statusAuth
			}
			// Which biller, if any, must have the transfer: only a
			// posting moved money to (or back from) one.
			kind, destID := billerNone, ""
			if st == statusOK {
				if d, ok := scope.dests[t.Credit]; ok {
					kind, destID = billerDest, d
				} else if d, ok := scope.dests[t.Debit]; ok && t.Op == store.OpReverse {
					kind, destID = billerDestReversal, d
				} else if scope.named {
					if t.Credit == scope.account {
						kind = billerLedger
					}
				} else {
					isBiller, ok := billers[t.Credit]
					if !ok {
						a, err := v.Account(t.Credit)
						if err != nil {
							return fmt.Errorf("settle: account %q: %w", t.Credit, err)
						}
						isBiller = a.Kind == store.KindBiller
						if len(billers) >= ownerCacheMax {
							clear(billers)
						}
						billers[t.Credit] = isBiller
					}
					if isBiller {
						kind = billerLedger
					}
				}
			}
			key := matchKey(t.Ref.RRN, t.Ref.STAN) // a new string: the record is not kept alive
			n := int32(len(rows))
			if first, dup := index[key]; !dup {
				index[key] = n
			} else {
				prev, ok := last[key]
				if !ok {
					prev = first
				}
				rows[prev].next = n
				last[key] = n
			}
			ccy, ok1 := sym.id(t.Currency)
			day, ok2 := sym.id(t.BusinessDay)
			dest, ok3 := uint16(0), true
			if destID != "" {
				dest, ok3 = sym.id(destID)
			}
			if !ok1 || !ok2 || !ok3 {
				return fmt.Errorf("%w: more than %d distinct currencies, dates and destinations", ErrTooLarge, symbolsMax)
			}
			rows = append(rows, ledgerRow{key: key, id: strings.Clone(t.ID), amount: t.Amount, ccy: ccy,
				day: day, status: st, next: -1, biller: kind, dest: dest, reversal: t.Op == store.OpReverse})
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
	}
	return rows, index, nil
}

func dayDiff(sym *symbols, x, y uint16) int {
	if x == y {
		return 0
	}
	a, b := sym.name(x), sym.name(y)
	ta, _ := time.Parse(time.DateOnly, a)
	tb, _ := time.Parse(time.DateOnly, b)
	d := int(ta.Sub(tb).Hours() / 24)
	if d < 0 {
		d = -d
	}
	return d
}

func fmtAmount(minor int64, code string) string {
	c, err := currency.ByCode(code)
	if err != nil {
		return fmt.Sprint(minor)
	}
	return currency.FormatMinor(minor, c, '.')
}

// reconcile matches the files against the ledger. Break ids are assigned
// in a fixed order (partner file order, then biller file order, then the
// ledger's order, then reversed forwards in key order), so the same
// inputs give the same list everywhere.
func reconcile(ctx context.Context, l ReconLedger, in *reconInput) (*ReconResult, error) {
	ledger, index, err := loadLedger(ctx, l, in)
	if err != nil {
		return nil, err
	}
	sym := in.sym
	res := &ReconResult{ID: in.id, Day: in.day, Partner: in.partner, Biller: in.biller, PartnerRows: len(in.partnerRows),
		BillerRows: len(in.billerRows), Counts: map[string]int{}}
	today, ok := sym.id(in.day)
	if !ok {
		return nil, fmt.Errorf("%w: more than %d distinct currencies and dates", ErrTooLarge, symbolsMax)
	}
	for _, r := range ledger {
		if r.day == today {
			res.LedgerRows++
		}
	}
	add := func(b Break) {
		b.Owner = Owners[b.Code]
		b.Partner = in.partner
		b.State = "open"
		res.Counts[b.Code]++
		res.Breaks = append(res.Breaks, b)
	}
	ours := func(r *ledgerRow) *Side {
		return &Side{Transfer: r.id, Amount: fmtAmount(r.amount, sym.name(r.ccy)), Currency: sym.name(r.ccy), Day: sym.name(r.day), Status: statusNames[r.status]}
	}
	theirs := func(f *fileRow) *Side {
		return &Side{Row: int(f.row), Amount: fmtAmount(f.amount, sym.name(f.ccy)), Currency: sym.name(f.ccy), Day: sym.name(f.day), Status: statusNames[f.status]}
	}
	// pick returns the ledger row file row f is about, of those with its
	// rrn and stan that no row of this file took yet: a file's reversal
	// row takes one of our reversals first; then the row of f's own date
	// before one a day off; the ledger's order breaks a tie. (A
	// destination's reversal has its original's rrn and stan on a later
	// day, and the tolerance brings both into the ledger read: the first
	// in ledger order paired a day's reversal with the day before's
	// payment.)
	pick := func(f *fileRow, seen func(*ledgerRow) *bool) *ledgerRow {
		var best *ledgerRow
		var bestMiss bool // best is not the reversal f reports
		bestDays := 0
		for j, ok := index[f.key]; ok && j >= 0; j = ledger[j].next {
			c := &ledger[j]
			if *seen(c) {
				continue
			}
			miss, days := f.reversal && !c.reversal, dayDiff(sym, f.day, c.day)
			if best == nil || !miss && bestMiss || miss == bestMiss && days < bestDays {
				best, bestMiss, bestDays = c, miss, days
			}
			if !miss && days == 0 {
				break
			}
		}
		return best
	}
	compare := func(source string, rows []fileRow, seen func(*ledgerRow) *bool) {
		for i := range rows {
			f := &rows[i]
			lr := pick(f, seen)
			b := Break{Source: source, RRN: f.rrn(), STAN: f.stan(), Theirs: theirs(f)}
			if lr == nil {
				b.Code, b.Detail = B1, "no transfer in our ledger with this rrn and stan"
				add(b)
				continue
			}
			*seen(lr) = true
			b.Ours = ours(lr)
			switch {
			case f.ccy != lr.ccy:
				b.Code, b.Detail = B5, fmt.Sprintf("currency %s, ours %s", sym.name(f.ccy), sym.name(lr.ccy))
			case f.amount != lr.amount:
				b.Code, b.Detail = B3, fmt.Sprintf("amount %s, ours %s", fmtAmount(f.amount, sym.name(f.ccy)), fmtAmount(lr.amount, sym.name(lr.ccy)))
			case !statusAgrees(f, lr):
				ourStatus := statusNames[lr.status]
				if f.reversal && !lr.reversal {
					ourStatus += " (not reversed)"
				}
				b.Code, b.Detail = B4, fmt.Sprintf("status %s, ours %s", statusNames[f.status], ourStatus)
			case dayDiff(sym, f.day, lr.day) > in.toleranceDays:
				b.Code, b.Detail = B5, fmt.Sprintf("date %s, ours %s (tolerance %d days)", sym.name(f.day), sym.name(lr.day), in.toleranceDays)
			default:
				res.Matched++
				continue
			}
			add(b)
		}
	}
	compare("partner", in.partnerRows, func(r *ledgerRow) *bool { return &r.byPartner })
	compare("biller", in.billerRows, func(r *ledgerRow) *bool { return &r.byBiller })
	for i := range ledger {
		r := &ledger[i]
		if r.biller == billerNone || r.byBiller || r.day != today {
			continue
		}
		detail := "posted to a biller account, missing in the biller's file"
		switch r.biller {
		case billerDest:
			detail = fmt.Sprintf("paid to http biller %s, missing in the biller's file", sym.name(r.dest))
		case billerDestReversal:
			detail = fmt.Sprintf("reversal of a payment to http biller %s, missing in the biller's file", sym.name(r.dest))
		}
		add(Break{Code: B2, Source: "biller", RRN: r.rrn(), STAN: r.stan(), Ours: ours(r), Detail: detail})
	}
	if rs, ok := l.(ReversedScanner); ok {
		// Forwards the host did not answer in time: switchd declined the
		// partner and owes the host a reversal. A pair whose advice the
		// host confirmed is settled; an advice that expired or was
		// dropped, or an approval the host sent after the timeout, is a
		// status the host may not share with us.
		err := rs.ScanReversedForwards(in.day, in.partner, func(r *store.ReversedForward) error {
			f, e := &r.Forward, &r.Advice
			b := Break{Code: B4, Source: "host", RRN: f.Ref.RRN, STAN: f.Ref.STAN,
				Ours: &Side{Transfer: f.ID, Amount: fmtAmount(f.Amount, f.Currency), Currency: f.Currency, Day: f.BusinessDay, Status: "timed_out"}}
			switch {
			case f.Late != nil && f.Late.Outcome == store.OutcomeApproved:
				b.Detail = fmt.Sprintf("host %s approved after the timeout (late answer, never posted); reversal advice %s is %s", f.Destination, e.ID, e.State)
			case e.State == store.SAFExpired:
				b.Detail = fmt.Sprintf("reversal advice %s to host %s expired unconfirmed after %d sends: the host may still hold the approval", e.ID, f.Destination, e.Sends)
			case e.State == store.SAFDropped:
				b.Detail = fmt.Sprintf("reversal advice %s to host %s was dropped by ops: confirm the reversal with the host", e.ID, f.Destination)
			default:
				return nil
			}
			add(b)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	for i := range res.Breaks {
		res.Breaks[i].ID = fmt.Sprintf("B%07d", i+1)
	}
	for _, c := range BreakCodes {
		res.Counts[c] += 0
	}
	return res, ctx.Err()
}

// statusAgrees says whether file row f's status is ledger row lr's: the
// same, or a reversal the file reports and ours that posted.
func statusAgrees(f *fileRow, lr *ledgerRow) bool {
	if f.status == statusReversed {
		return lr.reversal && lr.status == statusOK
	}
	if f.reversal && !lr.reversal {
		return false // the file's reversal is not this payment
	}
	return f.status == lr.status
}

// filterBreaks returns the breaks with code (all when empty).
func filterBreaks(bs []Break, code string) []Break {
	if code == "" {
		return slices.Clone(bs)
	}
	var out []Break
	for _, b := range bs {
		if b.Code == code {
			out = append(out, b)
		}
	}
	return out
}
