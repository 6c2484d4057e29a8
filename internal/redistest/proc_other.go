//go:build !linux

package redistest

import "syscall"

// sysProcAttr returns nil: only Linux can tie the child's life to the test
// binary's; elsewhere the cleanup registered by Start does the killing.
func sysProcAttr() *syscall.SysProcAttr {
	return nil
}
