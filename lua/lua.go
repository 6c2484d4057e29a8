package lua

import _ "embed" // the scripts are embedded

//go:embed lib.lua
var lib string

//go:embed acquire.lua
var acquire string

//go:embed record.lua
var record string

//go:embed fast.lua
var fast string

//go:embed force.lua
var force string

//go:embed read.lua
var read string

//go:embed budget.lua
var budget string

// Acquire returns the source of the script that admits a call or grants a
// probe lease.
func Acquire() string { return lib + "\n" + acquire }

// Record returns the source of the script that counts a batch of outcomes
// exactly once and trips the breaker.
func Record() string { return lib + "\n" + record }

// Fast returns the source of the script that counts the common report (a
// batch of successes for a closed breaker with no failure outstanding)
// without the prelude; it answers 0 when the report needs Record's script.
func Fast() string { return fast }

// Force returns the source of the script that forces a breaker open, closed,
// disabled, or resets it.
func Force() string { return lib + "\n" + force }

// Read returns the source of the script that reads a breaker's state with
// its window, creating the breaker when there is none.
func Read() string { return lib + "\n" + read }

// Budget returns the source of the script that counts a fleet's requests
// and grants retries from its retry budget. It stands alone: the breaker
// prelude (lib.lua) is not part of it.
func Budget() string { return budget }
