package agent

import (
	"errors"
	"net"
	"os"
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

// The system calls of gathering never block (the socket is non-blocking), so they are made raw,
// without telling the Go scheduler: a system call announced to it wakes the runtime's sysmon
// thread when it sleeps, and a woken sysmon polls every 20 µs (about 140 µs on a VM) for as long
// as the process stays busy. A gathering read follows a wakeup of the idle process, so announced
// calls woke sysmon at every one: the thread switches of its sleeps took 8 % of collector's CPU.

func (s tcpSock) getsockopt(opt int) (int, error) {
	var v int32
	var gerr error
	if err := s.raw.Control(func(fd uintptr) {
		l := uint32(unsafe.Sizeof(v))
		_, _, errno := syscall.RawSyscall6(syscall.SYS_GETSOCKOPT, fd, syscall.SOL_SOCKET, uintptr(opt),
			uintptr(unsafe.Pointer(&v)), uintptr(unsafe.Pointer(&l)), 0)
		if errno != 0 {
			gerr = errno
		}
	}); err != nil {
		return 0, err
	}
	return int(v), gerr
}

func (s tcpSock) setLowat(n int) error {
	var serr error
	if err := s.raw.Control(func(fd uintptr) {
		v := int32(n)
		_, _, errno := syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, fd, syscall.SOL_SOCKET, syscall.SO_RCVLOWAT,
			uintptr(unsafe.Pointer(&v)), unsafe.Sizeof(v), 0)
		if errno != 0 {
			serr = errno
		}
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
		n, rerr = rawRead(fd, p)
		return rerr != syscall.EAGAIN && rerr != syscall.EINTR
	})
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		// The patience ran out: take what has arrived, without the announced system calls of a
		// plain read (this happens at most once per maxPace while a body arrives).
		if n, rerr := s.readQueued(p); n > 0 {
			return n, rerr
		}
		return 0, err
	case err != nil:
		return 0, err
	case rerr != nil:
		return 0, rerr
	case n <= 0:
		return 0, syscall.ENODATA // the peer closed: the plain read returns io.EOF
	}
	return n, nil
}

// readQueued reads what is queued on the socket without waiting, whatever its read deadline.
func (s tcpSock) readQueued(p []byte) (int, error) {
	n := -1
	var rerr error
	if err := s.raw.Control(func(fd uintptr) { n, rerr = rawRead(fd, p) }); err != nil {
		return 0, err
	}
	if n <= 0 {
		return 0, rerr
	}
	return n, nil
}

// rawRead reads from a non-blocking fd.
func rawRead(fd uintptr, p []byte) (int, error) {
	r, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

// inq returns the bytes queued for reading on a TCP socket (SIOCINQ).
func inq(fd uintptr) (int, error) {
	var v int32
	if _, _, errno := syscall.RawSyscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&v))); errno != 0 {
		return 0, errno
	}
	return int(v), nil
}
