// Package backend is the contract between a breaker.Breaker and the store
// that keeps its shared state, as database/sql/driver is for database/sql.
// Users need only package store (or breakwatertest); implementers of another
// store read this.
//
// A store implements Store. A breaker asks it to admit a call (Acquire), to
// count a Batch of outcomes (Record), to carry out an operator's Command
// (Force) and to read the shared state (Read, or Do for many breakers in one
// round trip), and follows the breaker's transitions through Watch. Every
// Request carries the breaker's Policy; every Reply is the shared state as
// the store saw it while answering: a Verdict, a State, a generation and
// the Counts.
//
// Package backend imports no other Breakwater package (package breaker
// imports it): its State and Counts mirror breaker.State and
// breaker.Counts, value for value and field for field, and breaker converts
// them.
package backend
