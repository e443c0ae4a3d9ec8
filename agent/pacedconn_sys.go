package agent

import (
	"net"
	"syscall"
)

// socketRcvbuf returns a function reading conn's SO_RCVBUF, or nil when conn is not a socket.
func socketRcvbuf(conn net.Conn) func() (int, bool) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return func() (int, bool) {
		var v int
		var gerr error
		if err := raw.Control(func(fd uintptr) {
			v, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
		}); err != nil || gerr != nil {
			return 0, false
		}
		return v, true
	}
}
