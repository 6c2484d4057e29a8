// Package breakwaterotel records Breakwater's metrics through the
// OpenTelemetry metric API. It is a module of its own, so that programs
// that do not want OpenTelemetry do not depend on it.
//
// Make one Metrics per process and give it to every breaker as
// Settings.Observer; give retry policies its RetryEvents hook, and retry
// budgets to ObserveBudget:
//
//	m, err := breakwaterotel.New(breakwaterotel.Options{MeterProvider: provider})
//	b, err := breaker.New("payments", st, breaker.Settings{Observer: m})
//	policy := retry.Policy{Gate: b, OnEvent: m.RetryEvents("payments", nil)}
//	stop := m.ObserveBudget(budget)
//
// The instruments (names dotted, units UCUM, as OpenTelemetry's conventions
// ask; informed by resilience4j's resilience4j.circuitbreaker.* and Polly's
// resilience.polly.*). Every breaker metric has the attribute
// breakwater.circuitbreaker.name.
//
//	breakwater.circuitbreaker.calls            counter {call}    outcome (success, failure, ignored), slow
//	breakwater.circuitbreaker.call.duration    histogram s       outcome, slow
//	breakwater.circuitbreaker.rejections       counter {call}    reason (open, forced_open, half_open_full, local_fallback)
//	breakwater.circuitbreaker.state            gauge {state}     state: 1 for the one that decides, 0 for the other
//	                                                             four; from New on, before any transition
//	breakwater.circuitbreaker.transitions      counter           from_state, to_state, reason, decider (shared,
//	                                                             local: the local fallback breaker's)
//	breakwater.circuitbreaker.probes           counter {probe}   outcome
//	breakwater.circuitbreaker.fallback.active  gauge             fallback (local, open, closed): 1 while the store is
//	                                                             away and the fallback decides
//	breakwater.store.call.duration             histogram s       breakwater.store.operation (acquire, record, force,
//	                                                             read), error.type (unavailable, corrupt, protocol,
//	                                                             timeout, canceled, _OTHER) on failures
//	breakwater.circuitbreaker.batches          counter {batch}   error.type on failures (batched reporting)
//	breakwater.circuitbreaker.batch.outcomes   counter {outcome}
//	breakwater.circuitbreaker.outcomes.pending gauge {outcome}   outcomes waiting to be sent
//	breakwater.retry.attempts                  counter           breakwater.retry.name, .attempt, .outcome (success,
//	                                                             failure, gate_refused), .will_retry; error.type
//	                                                             (HTTP status, connection, timeout, rate_limit, _OTHER)
//	breakwater.retry.budget.requests           counter           breakwater.retry.budget.name
//	breakwater.retry.budget.retries            counter           .name, .decision (allowed, allowed_local, refused)
//	breakwater.retry.budget.tokens             gauge             .name: retries claimed and held unused
//
// Attribute keys are the Attr constants. The state gauge reports the state
// that decides this instance's calls (Breaker.State): the shared state as
// this instance sees it, which follows the store through pub/sub, or,
// while the store is unreachable, the fallback's (the local breaker's
// state, disabled when failing open, open when failing closed).
// Transitions count every transition of the shared state this instance
// heard, whichever instance made it, so sum them over one instance, not the
// fleet; those with decider=local are this instance's local breaker's.
package breakwaterotel
