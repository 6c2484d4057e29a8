// Package breaker is a circuit breaker shared by every instance of a service.
//
// A Breaker's state, generation and outcome counts live in a Store (package
// store keeps them in Redis) and change only through atomic scripts, so the
// whole fleet sees one closed, open or half-open state: it trips once, sends
// one probe, and recovers together.
//
// The model: a closed breaker lets calls through and counts their outcomes
// fleet-wide; a trip policy (consecutive failures, failure rate or slow-call
// rate over a sliding window, optionally only when a quorum of distinct
// instances reports trouble) opens it. An open breaker rejects calls with an
// error matching ErrOpen until its open duration, measured on the store's
// clock, is over. Then it is half-open: a fleet-wide number of probe leases
// (one by default) lets calls through; enough successful probes close it, a
// failed one opens it again. Every transition starts a new generation; an
// outcome is counted only under the generation it was admitted in.
//
// Decisions are cheap: a closed breaker admits calls from this instance's
// view of the shared state, an open one rejects them until a local monotonic
// deadline, and only a half-open breaker asks the store on every call. The
// view is refreshed by every store reply and by the transitions the store
// announces. While the store is unreachable, the breaker decides locally as
// Settings.Fallback says, and tells its listeners; Decider says what decides
// calls now and State reports its state, the local breaker's included.
//
// Execute runs a function under the breaker; Allow and Permit.Done are the
// two-step form for code that cannot be wrapped; ExecuteWithFallback runs a
// fallback when the breaker rejects the call. An error marked with Ignore is
// not counted, one marked with MarkSuccess counts as a success; Classify
// decides the rest. A Breaker is safe for concurrent use.
//
// A Group makes breakers on demand, one per key (a tenant, a host, a route),
// with shared settings and per-key overrides, and keeps a bounded number of
// them in memory; ExecuteIn runs a call under a key's breaker.
package breaker
