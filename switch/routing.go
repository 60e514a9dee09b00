package switching

import (
	"fmt"
	"sort"

	"github.com/switchd/switchd/outcome"
)

// routeKey is what a request is routed by.
type routeKey struct {
	BillType  string
	PayerType string
	Partner   string
}

// destination is where a routed request goes.
type destination struct {
	Name              string
	SettlementAccount string
}

// routes is the static routing table, sorted most specific first so that
// lookup is the first match. It is immutable after newRoutes.
type routes struct {
	rules    []Route
	partners map[string]Partner
}

func specificity(r Route) int {
	n := 0
	for _, f := range []string{r.BillType, r.PayerType, r.Partner} {
		if f != "" && f != routeWildcard {
			n++
		}
	}
	return n
}

func newRoutes(rules []Route, partners []Partner) *routes {
	rs := make([]Route, len(rules))
	copy(rs, rules)
	// Stable: among equally specific rules the one listed first wins.
	sort.SliceStable(rs, func(i, j int) bool { return specificity(rs[i]) > specificity(rs[j]) })
	pm := make(map[string]Partner, len(partners))
	for _, p := range partners {
		pm[p.ID] = p
	}
	return &routes{rules: rs, partners: pm}
}

func matches(pattern, v string) bool {
	return pattern == "" || pattern == routeWildcard || pattern == v
}

// lookup returns the destination for k, with the settlement account filled
// from the partner when the rule names none.
func (t *routes) lookup(k routeKey) (destination, error) {
	for _, r := range t.rules {
		if matches(r.BillType, k.BillType) && matches(r.PayerType, k.PayerType) && matches(r.Partner, k.Partner) {
			acct := r.SettlementAccount
			if acct == "" {
				acct = t.partners[k.Partner].SettlementAccount
			}
			if acct == "" {
				return destination{}, fmt.Errorf("%w: route for partner %q has no settlement account", outcome.ErrNoRoute, k.Partner)
			}
			return destination{Name: r.Destination, SettlementAccount: acct}, nil
		}
	}
	return destination{}, fmt.Errorf("%w: bill type %q, payer type %q, partner %q", outcome.ErrNoRoute, k.BillType, k.PayerType, k.Partner)
}
