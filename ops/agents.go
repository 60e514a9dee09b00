package ops

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchd/switchd/currency"
	"github.com/switchd/switchd/store"
)

// OTC agents: terminals under a partner that collect cash, each with a
// cash limit (store.Agent). Money here is int64 minor units of the agent's
// currency, written as a JSON integer: 12.34 USD is 1234. A JSON number
// with a fraction or an exponent is refused (it does not decode into an
// int64), never rounded.
//
//	GET  /v1/agents                      ?after=ID&limit=N
//	GET  /v1/agents/{id}                 id is partner:terminal (store.AgentID)
//	PUT  /v1/agents/{id}                 {currency, cash_limit, offline_limit, reason}
//	POST /v1/agents/{id}/settlements     {amount, currency, reference}: cash handed in
//
// A settlement is idempotent by (agent, reference): the same reference
// again with the same amount is answered from the FSM's record, with
// another amount it is refused (409 idempotency-conflict).

const (
	// agentsMetricsMax bounds the agents one scrape reads and labels: a
	// label per agent is a series per agent, and a scrape must stay cheap.
	agentsMetricsMax = 10_000
	// agentsMetricsPage is how many agents one store read returns.
	agentsMetricsPage = 1000
	// agentAlarmRatio is where an agent's cash nears its limit (Mojaloop's
	// alarm threshold before the net debit cap).
	agentAlarmRatio = 0.8
)

// agentRequest is the body of PUT /v1/agents/{id}.
type agentRequest struct {
	Currency string `json:"currency"`
	// CashLimit in minor units of Currency (JSON integer, required).
	CashLimit *int64 `json:"cash_limit"`
	// OfflineLimit in minor units bounds the cash the agent may report by
	// offline advice without having handed it in (store/advice.go,
	// docs/ADVICES.md); absent keeps the agent's current one (0, offline
	// advices refused, for a new agent).
	OfflineLimit *int64 `json:"offline_limit,omitempty"`
	Reason       string `json:"reason"`
}

// settlementRequest is the body of POST /v1/agents/{id}/settlements.
type settlementRequest struct {
	// Amount in minor units of Currency (JSON integer).
	Amount    int64  `json:"amount"`
	Currency  string `json:"currency"`
	Reference string `json:"reference"`
}

type agentView struct {
	store.Agent
	Replayed bool `json:"replayed,omitempty"`
}

func noAgent(id string) error { return fmt.Errorf("%w: no agent %q", store.ErrNotFound, id) }

// splitAgentID cuts partner:terminal (partner ids have no ':').
func splitAgentID(id string) (partner, terminal string, ok bool) {
	partner, terminal, ok = strings.Cut(id, ":")
	return partner, terminal, ok && partner != "" && terminal != ""
}

func (s *Server) listAgents(w http.ResponseWriter, r *http.Request) {
	limit, err := pageLimit(r)
	if err != nil {
		answer(w, badRequest(err.Error()))
		return
	}
	if !s.caughtUp(w, r) {
		return
	}
	as, err := s.ledger.Agents(r.URL.Query().Get("after"), limit)
	if err != nil {
		s.fail(w, err)
		return
	}
	if as == nil {
		as = []store.Agent{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"agents": as})
}

func (s *Server) getAgent(w http.ResponseWriter, r *http.Request) {
	if !s.caughtUp(w, r) {
		return
	}
	a, err := s.ledger.Agent(r.PathValue("id"))
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

func (s *Server) putAgent(w http.ResponseWriter, r *http.Request) {
	adm, ok := s.requireActor(w, r)
	if !ok {
		return
	}
	var req agentRequest
	if !decodeBody(w, r, &req, bodyBytesMax, false) {
		return
	}
	key, _, err := requestKey(r)
	if err != nil {
		answer(w, badRequest(err.Error()))
		return
	}
	id := r.PathValue("id")
	partner, terminal, ok := splitAgentID(id)
	if !ok {
		s.fail(w, changeError("id", "%q is not partner:terminal", id))
		return
	}
	if !s.caughtUp(w, r) {
		return
	}
	// The FSM checks all of this again; here a refusal proposes nothing.
	p, known := s.ledger.Directory().Partner(partner)
	_, cerr := currency.ByCode(req.Currency)
	switch {
	case !known:
		err = changeError("agent.partner", "no partner %q", partner)
	case !p.MayRefineTo(store.PayerOTCAgent):
		err = changeError("agent.partner", "partner %q has no payer type %s", partner, store.PayerOTCAgent)
	case cerr != nil:
		err = changeError("agent.currency", "%q is not an ISO 4217 code", req.Currency)
	case req.CashLimit == nil:
		err = changeError("agent.cash_limit", "required: minor units of the currency, a JSON integer")
	case *req.CashLimit < 0:
		err = changeError("agent.cash_limit", "%d is negative", *req.CashLimit)
	case req.OfflineLimit != nil && *req.OfflineLimit < 0:
		err = changeError("agent.offline_limit", "%d is negative", *req.OfflineLimit)
	}
	if err != nil {
		s.fail(w, err)
		return
	}
	old, getErr := s.ledger.Agent(id)
	existed := getErr == nil
	if getErr != nil && !errors.Is(getErr, store.ErrNotFound) {
		s.fail(w, getErr)
		return
	}
	ag := store.Agent{Partner: partner, Terminal: terminal, Currency: req.Currency, CashLimit: *req.CashLimit,
		OfflineLimit: old.OfflineLimit}
	if req.OfflineLimit != nil {
		ag.OfflineLimit = *req.OfflineLimit
	}
	adm.Reason, adm.Agent = req.Reason, &ag
	ctx, cancel := writeContext(r)
	defer cancel()
	res, err := s.propose(ctx, change{op: store.OpPutAgent, key: "admin|agent.put|" + id + "|" + key,
		fp: fingerprint("agent.put", ag, req.Reason), admin: adm})
	if err != nil {
		s.fail(w, err)
		return
	}
	status := http.StatusOK
	if !existed && !res.Replayed {
		status = http.StatusCreated
	}
	s.answerAgent(w, r, id, res, status)
}

func (s *Server) answerAgent(w http.ResponseWriter, r *http.Request, id string, res store.Result, status int) {
	if !s.caughtUp(w, r) {
		return
	}
	a, err := s.ledger.Agent(id)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, status, agentView{Agent: a, Replayed: res.Replayed})
}

// settleAgent records cash an agent handed in. Whether the agent holds
// that much is decided by the FSM only: a retry of a settlement that went
// through must get its first answer, although the cash it freed is gone.
func (s *Server) settleAgent(w http.ResponseWriter, r *http.Request) {
	adm, ok := s.requireActor(w, r)
	if !ok {
		return
	}
	var req settlementRequest
	if !decodeBody(w, r, &req, bodyBytesMax, false) {
		return
	}
	id := r.PathValue("id")
	var err error
	switch _, cerr := currency.ByCode(req.Currency); {
	case req.Amount <= 0:
		err = changeError("amount", "must be positive minor units (a JSON integer)")
	case cerr != nil:
		err = changeError("currency", "%q is not an ISO 4217 code", req.Currency)
	case !validReference(req.Reference):
		err = changeError("reference", "required: the receipt or slip number, 1 to %d letters, digits, '_', '-', '.'", idempotencyKeyBytesMax)
	}
	if err != nil {
		s.fail(w, err)
		return
	}
	if !s.caughtUp(w, r) {
		return
	}
	if _, err := s.ledger.Agent(id); err != nil {
		s.fail(w, err)
		return
	}
	st := store.AgentSettlement{Agent: id, Amount: req.Amount, Currency: req.Currency, Reference: req.Reference}
	adm.Settlement = &st
	ctx, cancel := writeContext(r)
	defer cancel()
	res, err := s.propose(ctx, change{op: store.OpSettleAgent, key: "agent-settlement|" + id + "|" + req.Reference,
		fp: fingerprint("agent.settle", st), admin: adm})
	if err != nil {
		s.fail(w, err)
		return
	}
	s.answerAgent(w, r, id, res, http.StatusOK)
}

// validReference is what the FSM takes as a settlement reference, within
// the length that keeps the idempotency key inside storeKeyBytesMax.
func validReference(s string) bool {
	if s == "" || len(s) > idempotencyKeyBytesMax {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// AgentLister is what the agent metrics read (store.Store).
type AgentLister interface {
	Agents(after string, limit int) ([]store.Agent, error)
}

// agentCollector exports the agents' cash-limit use on every scrape,
// reading at most agentsMetricsMax agents from this node's ledger.
type agentCollector struct {
	agents    AgentLister
	used      *prometheus.Desc
	over      *prometheus.Desc
	truncated *prometheus.Desc
}

func newAgentCollector(l AgentLister) *agentCollector {
	return &agentCollector{
		agents: l,
		used: prometheus.NewDesc("switchd_agent_cash_limit_used_ratio",
			"Cash an OTC agent holds over its cash limit (1 when the limit is 0 and it holds cash).", []string{"agent"}, nil),
		over: prometheus.NewDesc("switchd_agents_over_80_percent",
			"OTC agents holding at least 80% of their cash limit: they must settle soon.", nil, nil),
		truncated: prometheus.NewDesc("switchd_agents_metrics_truncated",
			fmt.Sprintf("1 when there are more than %d agents and the rest are not exported.", agentsMetricsMax), nil, nil),
	}
}

func (c *agentCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.used
	ch <- c.over
	ch <- c.truncated
}

func (c *agentCollector) Collect(ch chan<- prometheus.Metric) {
	over, seen, truncated := 0, 0, 0
	after := ""
	for seen < agentsMetricsMax {
		page, err := c.agents.Agents(after, min(agentsMetricsPage, agentsMetricsMax-seen))
		if err != nil {
			ch <- prometheus.NewInvalidMetric(c.used, err)
			return
		}
		for _, a := range page {
			ratio := 0.0
			switch {
			case a.CashLimit > 0:
				ratio = float64(a.CashHeld) / float64(a.CashLimit)
			case a.CashHeld > 0:
				ratio = 1
			}
			if ratio >= agentAlarmRatio {
				over++
			}
			ch <- prometheus.MustNewConstMetric(c.used, prometheus.GaugeValue, ratio, a.ID)
		}
		seen += len(page)
		if len(page) == 0 || len(page) < agentsMetricsPage {
			break
		}
		after = page[len(page)-1].ID
	}
	if seen >= agentsMetricsMax {
		if more, err := c.agents.Agents(after, 1); err == nil && len(more) > 0 {
			truncated = 1
		}
	}
	ch <- prometheus.MustNewConstMetric(c.over, prometheus.GaugeValue, float64(over))
	ch <- prometheus.MustNewConstMetric(c.truncated, prometheus.GaugeValue, float64(truncated))
}
