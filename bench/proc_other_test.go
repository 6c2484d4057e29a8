//go:build !linux

package bench

import "syscall"

// sysProcAttr returns nil: only Linux can tie the child's life to the test
// binary's; elsewhere the cleanup registered by startRedis kills it.
func sysProcAttr() *syscall.SysProcAttr { return nil }
