package agent

import (
	"net"
	"syscall"
	"unsafe"
)

// tcpSock gathers the reads of a TCP socket with its receive low-water mark (pacedConn).
type tcpSock struct {
	raw syscall.RawConn
}

// newPacedSock returns conn's socket when conn is a TCP connection, else nil.
func newPacedSock(conn net.Conn) pacedSock {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return nil
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return tcpSock{raw: raw}
}

func (s tcpSock) rcvbuf() (int, error) {
	return s.getsockopt(syscall.SO_RCVBUF)
}

func (s tcpSock) getsockopt(opt int) (int, error) {
	var v int
	var gerr error
	if err := s.raw.Control(func(fd uintptr) {
		v, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, opt)
	}); err != nil {
		return 0, err
	}
	return v, gerr
}

func (s tcpSock) setLowat(n int) error {
	var serr error
	if err := s.raw.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, n)
	}); err != nil {
		return err
	}
	return serr
}

func (s tcpSock) gather(p []byte, target int) (int, error) {
	var n int
	var rerr error
	checked := false
	err := s.raw.Read(func(fd uintptr) bool {
		if !checked {
			checked = true
			if q, err := inq(fd); err == nil && q < target {
				return false // wait: the kernel wakes the poller once the mark is reached
			}
		}
		n, rerr = syscall.Read(int(fd), p)
		return rerr != syscall.EAGAIN && rerr != syscall.EINTR
	})
	switch {
	case err != nil:
		return 0, err
	case rerr != nil:
		return 0, rerr
	case n <= 0:
		return 0, syscall.ENODATA // the peer closed: the plain read returns io.EOF
	}
	return n, nil
}

// inq returns the bytes queued for reading on a TCP socket (SIOCINQ).
func inq(fd uintptr) (int, error) {
	var v int32
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&v))); errno != 0 {
		return 0, errno
	}
	return int(v), nil
}
