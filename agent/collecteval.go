package agent

import (
	"context"
	"errors"
	"os"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/sirupsen/logrus"
)

// Collect rules (collectrules.go, collectstate.go, collecteval.go)
//
// Every evaluate interval (the first at Run's start) a Source with collect rules runs each
// rule's expr as an instant query at the tick's time on from_query, and feeds the result to the
// state machine (collectState.observe): a series is pending, then firing once it has been
// returned for `for`; a pending series that goes is forgotten; a firing one resolves once it has
// been gone 15 minutes. A failed query changes nothing (counted, logged). While a rule has a
// firing series its names ({__name__="n"}) and matches (with {{ $labels.x }} filled in from each
// firing series, wrapped in braces) are federated right after the evaluation, through the same
// transforms, each request its own scrape and WAL commit. The state is saved after every
// evaluation in the WAL's sidecar file collectrules.sidecar.json (tmp, fsync, rename, fsync dir),
// loaded when the source is built and kept across reloads (a rule removed by a reload loses its
// state), so that a restart neither forgets a firing rule nor restarts a pending one's `for` (the
// seed kept it in memory). A pending series not returned for more than two evaluate intervals
// (a restart, failed queries) starts its `for` again.

// collectStateFile is the sidecar file of the collect-rule state in the WAL's directory.
const collectStateFile = "collectrules.sidecar.json"

// requestTypeCollect is the federate_requests_total type of collect-rule queries.
const requestTypeCollect = "collectrule"

// sidecarStore is where the collect-rule state is persisted: the WAL (wal.WAL.ReadSidecar).
type sidecarStore interface {
	ReadSidecar(name string) ([]byte, error)
	WriteSidecar(name string, data []byte) error
}

type collectMetrics struct {
	pending, firing, matchers *prometheus.GaugeVec
	failures                  *prometheus.CounterVec
	saveFailures              prometheus.Counter
}

func newCollectMetrics(reg prometheus.Registerer) *collectMetrics {
	f := promauto.With(reg)
	return &collectMetrics{
		pending: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "collector_collectrule_pending_series",
			Help: "Series of a collect rule's result that are pending (returned for less than the rule's for).",
		}, []string{"rule"}),
		firing: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "collector_collectrule_firing_series",
			Help: "Series of a collect rule that fire (or are gone for less than 15 minutes).",
		}, []string{"rule"}),
		matchers: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "collector_collectrule_active_matchers",
			Help: "Matchers a collect rule federates every evaluate interval while it fires.",
		}, []string{"rule"}),
		failures: f.NewCounterVec(prometheus.CounterOpts{
			Name: "collector_collectrule_evaluation_failures_total",
			Help: "Collect-rule evaluations whose query failed; the rule's state is unchanged.",
		}, []string{"rule"}),
		saveFailures: f.NewCounter(prometheus.CounterOpts{
			Name: "collector_collectrule_state_save_failures_total",
			Help: "Saves of the collect-rule state next to the WAL that failed (the state in memory goes on).",
		}),
	}
}

// loadCollectState reads the persisted state; none or an unreadable one starts empty (logged).
func (s *Source) loadCollectState() {
	s.cstate = newCollectState()
	if s.store == nil {
		return
	}
	b, err := s.store.ReadSidecar(collectStateFile)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			s.logger.WithError(err).Warn("collect-rule state unreadable; starting without it")
		}
		return
	}
	c, err := unmarshalCollectState(b)
	if err != nil {
		s.logger.WithError(err).Warn("collect-rule state unreadable; starting without it")
		return
	}
	s.cstate = c
	s.savedState = b
	s.logger.WithField("rules", len(c.Rules)).Info("collect-rule state loaded")
}

// runCollect evaluates the collect rules every evaluate interval until ctx is done. Without
// rules it waits for a reload that brings some.
func (s *Source) runCollect(ctx context.Context) {
	for {
		st := s.getState()
		if len(st.collect) == 0 {
			s.collectCycle(ctx, st, s.clock.Now()) // forget the state of removed rules
			select {
			case <-ctx.Done():
				return
			case <-s.collectWake:
				continue
			}
		}
		start := s.clock.Now()
		s.collectCycle(ctx, st, start)
		if ctx.Err() != nil {
			return
		}
		next, _ := nextTick(start, s.clock.Now(), st.cfg.EvaluateInterval)
		select {
		case <-ctx.Done():
			return
		case <-s.clock.After(next.Sub(s.clock.Now())):
		}
	}
}

// collectCycle evaluates every collect rule at now, saves the state, updates the metrics and
// federates the matchers of the firing rules.
func (s *Source) collectCycle(ctx context.Context, st *sourceState, now time.Time) {
	timeout := min(st.cfg.Timeout, time.Duration(float64(st.cfg.EvaluateInterval)*timeoutFraction))
	type outcome struct {
		result []map[string]string
		err    error
	}
	outs := make([]outcome, len(st.collect))
	done := make(chan struct{}, len(st.collect))
	sem := make(chan struct{}, maxRuleParallelism)
	for i, r := range st.collect {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; done <- struct{}{} }()
			outs[i].result, outs[i].err = s.evalCollectRule(ctx, st, r, now, timeout)
		}()
	}
	for range st.collect {
		<-done
	}
	if ctx.Err() != nil {
		return
	}
	s.collectMtx.Lock()
	names := map[string]bool{}
	var matchers []string
	for i, r := range st.collect {
		names[r.Name] = true
		if err := outs[i].err; err != nil {
			s.cmetrics.failures.WithLabelValues(r.Name).Inc()
			s.logger.WithFields(logrus.Fields{"rule": r.Name, "reason": reasonOf(err), "err": err}).Warn("collect rule evaluation failed; its state is unchanged")
		} else {
			forDur, _ := r.ForDuration() // validated
			s.cstate.observe(r.Name, forDur, 2*st.cfg.EvaluateInterval, outs[i].result, now)
		}
		ms, errs := s.cstate.activeMatchers(r)
		for _, err := range errs {
			s.logger.WithError(err).Warn("collect rule match skipped")
		}
		pending, firing := s.cstate.counts(r.Name)
		s.cmetrics.pending.WithLabelValues(r.Name).Set(float64(pending))
		s.cmetrics.firing.WithLabelValues(r.Name).Set(float64(firing))
		s.cmetrics.matchers.WithLabelValues(r.Name).Set(float64(len(ms)))
		matchers = append(matchers, ms...)
	}
	for r := range s.collectRules {
		if !names[r] {
			s.cmetrics.pending.DeleteLabelValues(r)
			s.cmetrics.firing.DeleteLabelValues(r)
			s.cmetrics.matchers.DeleteLabelValues(r)
		}
	}
	s.collectRules = names
	s.cstate.keep(names)
	s.saveCollectState()
	s.collectMtx.Unlock()
	if len(matchers) == 0 {
		return
	}
	sort.Strings(matchers)
	matchers = dedup(matchers)
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, ms := range chunkMatchers(matchers, maxRequestURIBytes-len(st.federate.RequestURI())) {
		if err := s.scrape(sctx, st, ms); err != nil {
			if ctx.Err() != nil {
				return
			}
			reason := reasonOf(err)
			s.metrics.failures.WithLabelValues(reason).Inc()
			s.logger.WithFields(logrus.Fields{"matchers": len(ms), "reason": reason, "err": err}).Warn("collect-rule federation failed; nothing appended, retrying at the next evaluation")
			if reason == reasonTransport || reason == reasonTimeout || reason == reasonAuth {
				return
			}
		}
	}
	s.logger.WithField("matchers", len(matchers)).Debug("collect rules federated")
}

// saveCollectState persists the state when it changed since the last save. Called with
// collectMtx held.
func (s *Source) saveCollectState() {
	if s.store == nil || len(s.cstate.Rules) == 0 && s.savedState == nil {
		return // nothing to keep, and no file to empty
	}
	b, err := s.cstate.marshal()
	if err == nil && string(b) == string(s.savedState) {
		return
	}
	if err == nil {
		err = s.store.WriteSidecar(collectStateFile, b)
	}
	if err != nil {
		s.cmetrics.saveFailures.Inc()
		s.logger.WithError(err).Warn("collect-rule state not saved; a restart would lose its changes")
		return
	}
	s.savedState = b
}

// evalCollectRule runs a rule's expr and returns the labels of its result's series (without
// __name__ and empty values).
func (s *Source) evalCollectRule(ctx context.Context, st *sourceState, r CollectRule, ts time.Time, timeout time.Duration) ([]map[string]string, error) {
	qr, err := s.instantQuery(ctx, st, r.Expr, ts, timeout, requestTypeCollect)
	if err != nil {
		return nil, err
	}
	samples, err := ruleSamples("collect", qr)
	if err != nil {
		return nil, &scrapeError{Reason: reasonParse, Err: err}
	}
	out := make([]map[string]string, 0, len(samples))
	for _, smp := range samples {
		out = append(out, smp.Labels.Map())
	}
	return out, nil
}
