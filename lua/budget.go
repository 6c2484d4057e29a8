package lua

import _ "embed" // the script is embedded

//go:embed budget.lua
var budget string

// Budget is the source of the script that counts a fleet's requests and
// grants retries from its retry budget. It stands alone: the breaker
// prelude (lib.lua) is not part of it.
var Budget = budget
