package lua

import _ "embed" // the scripts are embedded

//go:embed lib.lua
var lib string

//go:embed acquire.lua
var acquire string

//go:embed record.lua
var record string

//go:embed force.lua
var force string

//go:embed read.lua
var read string

// Acquire is the source of the script that admits a call or grants a probe lease.
var Acquire = lib + "\n" + acquire

// Record is the source of the script that counts outcomes and trips the breaker.
var Record = lib + "\n" + record

// Force is the source of the script that forces a breaker open, closed,
// disabled, or resets it.
var Force = lib + "\n" + force

// Read is the source of the script that reads a breaker's state.
var Read = lib + "\n" + read
