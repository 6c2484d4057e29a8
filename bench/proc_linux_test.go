package bench

import "syscall"

// sysProcAttr has the kernel kill redis-server when the test binary dies,
// so that a crashed or interrupted run leaves no server behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
