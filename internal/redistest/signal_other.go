//go:build !unix

package redistest

import (
	"errors"
	"os"
)

// canFreeze reports whether Freeze is supported.
const canFreeze = false

var errNoSignals = errors.New("redistest: SIGSTOP and SIGCONT are not available")

// freeze is not supported here.
func freeze(*os.Process) error { return errNoSignals }

// thaw is not supported here.
func thaw(*os.Process) error { return errNoSignals }
