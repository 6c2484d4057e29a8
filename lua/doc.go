// Package lua holds Breakwater's Redis scripts, the only code that changes a
// breaker's shared state. Each script is a .lua file headed by its purpose,
// KEYS, ARGV and reply; lib.lua is the prelude they share, prepended here.
// The package holds sources only: store/ runs them.
package lua
