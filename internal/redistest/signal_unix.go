//go:build unix

package redistest

import (
	"os"
	"syscall"
)

// canFreeze reports whether Freeze is supported.
const canFreeze = true

// freeze stops p with SIGSTOP.
func freeze(p *os.Process) error { return p.Signal(syscall.SIGSTOP) }

// thaw resumes p with SIGCONT.
func thaw(p *os.Process) error { return p.Signal(syscall.SIGCONT) }
