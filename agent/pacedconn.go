package agent

import (
	"context"
	"net"
	"syscall"
	"time"
)

// Read pacing of the source's connections.
//
// Prometheus serves /federate slower than collector parses it (2.42 wrote 85 MB of 200k series
// in about 2.3 s on a 2-core VM, in writes of 4 to 6 KiB). Reading as the body comes makes a
// read, and often a wakeup of the idle process, every few KiB: about 9,000 reads and as many
// context switches per scrape, and the Go runtime's sysmon thread, woken at every wakeup of an
// idle process, polls every 20 µs for the next millisecond each time. On that VM the collector
// took 2.3-3.0 CPU-s per million samples reading as the body came, 1.6-1.8 with the reads paced
// as below (docs/operations.md, "Size the CPU").
//
// A pacedConn therefore reads a body that has passed paceAfter bytes into a buffer of
// paceBuffer bytes, and waits before a read that follows a short one (less than half the
// buffer: the data arrives slower than it is read), so that each wakeup takes a larger piece. The
// wait starts at minPace and doubles while the reads after it stay short, up to maxPace. It is
// halved, down to none, when a read after a wait took a quarter or more of the socket's receive
// buffer (SO_RCVBUF): then the TCP window, not the source, limits the rate, and waiting would
// slow the transfer. A read that blocked for quietGap or more, or one that starts quietGap or more
// after the last, begins a new body: no wait until it has passed paceAfter bytes again. So small
// bodies, headers and TLS handshakes are read as before, and a body that arrives faster than it is
// read (a full buffer at every read) is never delayed.
const (
	paceAfter  = 1 << 20
	paceBuffer = 1 << 20
	minPace    = time.Millisecond
	maxPace    = 20 * time.Millisecond
	quietGap   = time.Second
)

// pacedConn paces the reads of a connection (see above). Writes, deadlines and Close are the
// connection's; a wait is not cut short by them (it lasts at most maxPace), the read after it
// sees them. Not safe for concurrent Reads (net/http reads a connection from one goroutine).
type pacedConn struct {
	net.Conn
	rcvbuf func() (int, bool) // the socket's receive buffer in bytes; nil: not a socket, no waits; false: unknown, a wait is halved
	sleep  func(time.Duration)
	now    func() time.Time

	buf     []byte
	r, w    int   // unread bytes of buf
	err     error // the error of the read that filled buf, returned once buf is drained
	streak  int   // bytes read since the connection was last quiet
	pace    time.Duration
	short   bool // the last read returned less than half of paceBuffer
	lastEnd time.Time
}

func newPacedConn(conn net.Conn) *pacedConn {
	return &pacedConn{Conn: conn, rcvbuf: socketRcvbuf(conn), sleep: time.Sleep, now: time.Now}
}

// dialPaced dials with a zero net.Dialer, as prometheus/common does without a dial function, and
// paces the connection's reads.
func dialPaced(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return newPacedConn(conn), nil
}

func (c *pacedConn) Read(p []byte) (int, error) {
	if c.r < c.w {
		n := copy(p, c.buf[c.r:c.w])
		c.r += n
		return n, nil
	}
	if c.err != nil {
		err := c.err
		c.err = nil
		return 0, err
	}
	if len(p) == 0 {
		return c.Conn.Read(p)
	}
	start := c.now()
	if start.Sub(c.lastEnd) >= quietGap {
		c.quiet()
	}
	if c.streak < paceAfter || c.rcvbuf == nil {
		n, err := c.Conn.Read(p)
		c.done(start, n, len(p) >= paceBuffer, false)
		return n, err
	}
	waited := false
	if c.short && c.pace > 0 {
		c.sleep(c.pace)
		waited = true
	}
	if len(p) >= paceBuffer {
		n, err := c.Conn.Read(p)
		c.done(start, n, true, waited)
		return n, err
	}
	if c.buf == nil {
		c.buf = make([]byte, paceBuffer)
	}
	n, err := c.Conn.Read(c.buf)
	c.done(start, n, true, waited)
	k := copy(p, c.buf[:n])
	c.r, c.w = k, n
	if n > 0 && err != nil {
		c.err, err = err, nil // after the bytes
	}
	return k, err
}

// done accounts a read of n bytes that started at start, into a buffer of paceBuffer bytes or
// more (whole) or not, after a wait or not, and sets the next wait. Only a whole read tells
// whether the data arrives slower than it is read.
func (c *pacedConn) done(start time.Time, n int, whole, waited bool) {
	end := c.now()
	if end.Sub(start) >= quietGap {
		c.quiet() // it blocked: the bytes begin a new body
	}
	c.lastEnd = end
	c.streak += n
	c.short = whole && n < paceBuffer/2
	switch {
	case !whole || c.streak < paceAfter || c.rcvbuf == nil:
	case waited && c.windowBound(n):
		c.pace /= 2
		if c.pace < minPace {
			c.pace = 0
		}
	case !c.short:
	case c.pace == 0:
		c.pace = minPace
	case waited:
		c.pace = min(2*c.pace, maxPace)
	}
}

func (c *pacedConn) quiet() {
	c.streak, c.pace, c.short = 0, 0, false
}

// windowBound tells whether a read of n bytes after a wait took a quarter or more of the
// socket's receive buffer, or the buffer is unknown.
func (c *pacedConn) windowBound(n int) bool {
	rb, ok := c.rcvbuf()
	return !ok || n >= rb/4
}

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
