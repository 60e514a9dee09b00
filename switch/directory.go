package switching

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/switchd/switchd/payment"
	"github.com/switchd/switchd/store"
)

// DirectorySeeds returns the config's partners and routes as the store
// keeps them, defaults filled in: a partner without lanes gets the lanes
// whose partners: list names it, a partner without a payer type
// bank_customer, a route without an id route-N (N its position from 1),
// and empty route key fields "*".
func (c Config) DirectorySeeds() ([]store.Partner, []store.Route) {
	var partners []store.Partner
	for _, p := range c.Partners {
		sp := store.Partner{
			ID: p.ID, AcquirerIDs: slices.Clone(p.AcquirerIDs), Lanes: slices.Clone(p.Lanes),
			SettlementAccount: p.SettlementAccount, WithdrawalMax: p.WithdrawalMax,
			PayerType: p.PayerType, PayerTypes: slices.Clone(p.PayerTypes), Allow: slices.Clone(p.Allow),
			CertPins: slices.Clone(p.CertPins),
		}
		if len(sp.Lanes) == 0 {
			for _, l := range c.Lanes {
				if slices.Contains(l.Partners, p.ID) {
					sp.Lanes = append(sp.Lanes, l.Name)
				}
			}
		}
		if sp.PayerType == "" {
			sp.PayerType = store.PayerBankCustomer
		}
		partners = append(partners, sp)
	}
	var routes []store.Route
	for i, r := range c.Routes {
		sr := payment.NormalRoute(store.Route{
			ID: r.ID, BillType: r.BillType, PayerType: r.PayerType, Partner: r.Partner,
			Destination: r.Destination, SettlementAccount: r.SettlementAccount,
		})
		if sr.ID == "" {
			sr.ID = fmt.Sprintf("route-%d", i+1)
		}
		routes = append(routes, sr)
	}
	return partners, routes
}

// validateDirectory checks the partners and routes by the store's own
// rules (so a seed the FSM would refuse is refused at start), except
// that accounts are not looked up: they may come from ops, not the file.
func (c Config) validateDirectory() error {
	partners, routes := c.DirectorySeeds()
	anyAccount := func(id string) (store.Account, bool) { return store.Account{ID: id}, true }
	d := store.NewDirectory(partners, nil).WithDestinations(c.Destinations)
	for _, p := range partners {
		if err := d.CheckPartner(p, anyAccount, time.Now()); err != nil {
			return directoryErr("partner "+p.ID, err)
		}
	}
	ids := map[string]int{}
	keys := map[store.RouteKey]int{}
	for i, r := range routes {
		if j, dup := ids[r.ID]; dup {
			return fmt.Errorf("%w: switch.routes[%d] and switch.routes[%d] have the same id %q", ErrConfig, j, i, r.ID)
		}
		ids[r.ID] = i
		k := r.Key()
		if j, dup := keys[k]; dup {
			return fmt.Errorf("%w: routes %q (switch.routes[%d]) and %q (switch.routes[%d]) have the same key "+
				"(bill_type %s, payer_type %s, partner %s): one would never route", ErrConfig,
				routes[j].ID, j, r.ID, i, k.BillType, k.PayerType, k.Partner)
		}
		keys[k] = i
		if err := d.CheckRoute(r, anyAccount, fmt.Sprintf("switch.routes[%d]", i)); err != nil {
			return directoryErr("route "+r.ID, err)
		}
	}
	return nil
}

// directoryErr says which record a store check refused, and why.
func directoryErr(what string, err error) error {
	var ce *store.ChangeError
	if errors.As(err, &ce) {
		return fmt.Errorf("%w: %s: %s: %s", ErrConfig, what, ce.Field, ce.Msg)
	}
	return fmt.Errorf("%w: %s: %v", ErrConfig, what, err)
}
