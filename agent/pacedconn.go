package agent

import (
	"context"
	"net"
	"sync"
	"time"
)

// Read pacing of the source's connections.
//
// Prometheus serves /federate slower than collector parses it (2.42 wrote 85 MB of 200k series
// in about 2.3 s on a 2-core VM, in writes of 4 to 6 KiB). Reading as the body comes makes a
// read, and often a wakeup of the idle process, every few KiB: about 9,000 reads and as many
// context switches per scrape, and the Go runtime's sysmon thread, woken by the first system
// call announced to the scheduler after a wakeup of the idle process, polls every 20 µs for the
// next millisecond each time (the system calls of gathering are raw: pacedconn_linux.go). Sleeping between reads
// saves less than it should: the runtime's network poller still wakes at every segment that
// arrives (Go registers sockets edge-triggered), whether a goroutine waits for it or not.
//
// A pacedConn therefore gathers the reads of a body that has passed paceAfter bytes, unless the
// last read filled its buffer (the body arrives faster than it is read): it sets the socket's
// receive low-water mark (SO_RCVLOWAT) to half of its paceBuffer-byte buffer, at most a quarter
// of the socket's receive buffer, and waits until that much has arrived, or until a deadline
// maxPace away at most (one deadline serves the gathering reads that start before it passes:
// renewGatherDeadline). The kernel wakes the process only once the mark is reached, or when its
// receive window or memory runs short (so the sender is not left waiting for the mark), or when
// the peer closes. When the deadline passes first, the read takes what has arrived; with
// nothing arrived, the mark goes back to 1 and it waits for the next byte as a plain read does:
// a body's end that falls short of the mark costs at most maxPace, never a hang. A read that blocked for quietGap or
// more, or one that starts quietGap or more after the last, begins a new body: no gathering
// until it has passed paceAfter bytes again. So small bodies, headers and TLS handshakes are
// read as before.
//
// Gathering needs Linux and a TCP socket; elsewhere a pacedConn reads as a plain connection
// does. On a 2-core VM against a Prometheus source the collector took 1.23-1.46 CPU-s per
// million samples gathering, 1.39-1.80 sleeping up to 20 ms between reads, 2.3-3.0 reading as
// the body came; on another day 1.06-1.09 with one deadline for several gathering reads and raw
// system calls, against 1.17-1.31 before (docs/operations.md, "Size the CPU").
//
// Every timer that fires in an idle process wakes two threads (the network poller, twice, since
// its timeout is in whole milliseconds, rounded down; and sysmon, which sleeps until the next
// timer), where data reaching the mark wakes one. Hence the large buffer (a 2 MiB mark, 25 reads
// for a 52 MB body) and the long patience: with 1 MiB and 100 ms the deadlines' wakeups
// outnumbered the data's. The price is a body's end that falls short of the mark: it waits up
// to 250 ms.
const (
	paceAfter  = 64 << 10
	paceBuffer = 4 << 20
	maxPace    = 250 * time.Millisecond
	quietGap   = time.Second
)

// pacedSock is what gathering needs of a socket.
type pacedSock interface {
	// rcvbuf returns the socket's receive buffer (SO_RCVBUF) in bytes.
	rcvbuf() (int, error)
	// setLowat sets the socket's receive low-water mark (SO_RCVLOWAT).
	setLowat(n int) error
	// gather reads into p once at least target bytes are queued, or once the kernel says the
	// socket is readable after a wait (the mark, a closed window, the peer's close). When the read
	// deadline passes first, it takes what has arrived. On an error without bytes (the read
	// deadline's with nothing queued, the peer's close, any other) a plain read follows, which
	// tells what happened in net's own terms.
	gather(p []byte, target int) (int, error)
}

// pacedConn paces the reads of a connection (see above). Writes, write deadlines and Close are
// the connection's. Not safe for concurrent Reads (net/http reads a connection from one
// goroutine); deadlines may be set concurrently with a Read.
type pacedConn struct {
	net.Conn
	sock     pacedSock // nil: reads as they come
	patience time.Duration
	now      func() time.Time

	buf     []byte
	r, w    int   // unread bytes of buf
	err     error // the error of the read that filled buf, returned once buf is drained
	streak  int   // bytes read since the connection was last quiet
	fast    bool  // the last read filled a buffer of paceBuffer bytes or more
	lowat   int   // the low-water mark set on the socket; 0 or 1: the default
	lastEnd time.Time

	mu       sync.Mutex
	readDL   time.Time // the read deadline asked for by the caller
	gatherDL time.Time // the deadline of gathering reads, on the connection until a plain read, if earlier than readDL
}

func newPacedConn(conn net.Conn) *pacedConn {
	return &pacedConn{Conn: conn, sock: newPacedSock(conn), patience: maxPace, now: time.Now}
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
	if c.streak < paceAfter || c.sock == nil {
		n, err := c.plainRead(p)
		c.done(start, n, len(p))
		return n, err
	}
	dst := p
	if len(p) < paceBuffer {
		if c.buf == nil {
			c.buf = make([]byte, paceBuffer)
		}
		dst = c.buf
	}
	var n int
	var err error
	if c.fast {
		n, err = c.plainRead(dst)
	} else {
		n, err = c.gather(dst)
	}
	c.done(start, n, len(dst))
	if len(p) >= paceBuffer {
		return n, err
	}
	k := copy(p, dst[:n])
	c.r, c.w = k, n
	if n > 0 && err != nil {
		c.err, err = err, nil // after the bytes
	}
	return k, err
}

// plainRead reads as a plain connection does, with the low-water mark back at 1 and the
// caller's read deadline back in place.
func (c *pacedConn) plainRead(p []byte) (int, error) {
	if err := c.clearGatherDeadline(); err != nil {
		return 0, err
	}
	if c.lowat > 1 {
		if err := c.sock.setLowat(1); err != nil {
			return 0, err
		}
		c.lowat = 1
	}
	return c.Conn.Read(p)
}

// gather waits for half of p, at most a quarter of the receive buffer, for at most patience,
// then reads.
func (c *pacedConn) gather(p []byte) (int, error) {
	rb, err := c.sock.rcvbuf()
	target := min(len(p)/2, rb/4)
	if err != nil || target <= 1 {
		return c.plainRead(p)
	}
	if target != c.lowat {
		if err := c.sock.setLowat(target); err != nil {
			return c.plainRead(p)
		}
		c.lowat = target
	}
	if err := c.renewGatherDeadline(c.now()); err != nil {
		return c.plainRead(p)
	}
	if n, err := c.sock.gather(p, target); n > 0 {
		return n, err // the gathering deadline stays for the next gathering read
	}
	// The patience ran out, or something else happened: a plain read takes what has arrived,
	// waits for the next byte, or returns the connection's error in net's own terms.
	return c.plainRead(p)
}

// done accounts a read of n bytes into a buffer of size bytes that started at start.
func (c *pacedConn) done(start time.Time, n, size int) {
	end := c.now()
	if end.Sub(start) >= quietGap {
		c.quiet() // it blocked: the bytes begin a new body
	}
	c.lastEnd = end
	c.streak += n
	c.fast = size >= paceBuffer && n == size
}

func (c *pacedConn) quiet() {
	c.streak, c.fast = 0, false
}

// SetReadDeadline sets the read deadline; a gathering read in progress keeps its own, earlier
// one until it ends.
func (c *pacedConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.readDL = t
	if !c.gatherDL.IsZero() && (t.IsZero() || t.After(c.gatherDL)) {
		return nil
	}
	return c.Conn.SetReadDeadline(t)
}

// SetDeadline sets the read and write deadlines.
func (c *pacedConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.SetReadDeadline(t)
}

// renewGatherDeadline makes sure a gathering read starting at now waits for at most patience: a
// deadline set by an earlier gathering read stays until it has passed. Go leaves a timer moved
// later at its old place in the runtime's heap, so a deadline moved before it is due still wakes
// the idle process when it was due: a deadline set at every gathering read (one every 10 to 15
// ms while a body arrives from Prometheus) woke the idle process twice as often as the data did,
// and one renewed once half of it had passed still added two wakeups every 50 to 100 ms. A
// deadline that passes while a gathering read waits ends it early, and the read takes what has
// arrived: that wakeup reads data. The caller's read deadline wins when it is earlier.
func (c *pacedConn) renewGatherDeadline(now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.gatherDL.IsZero() && c.gatherDL.After(now) {
		return nil
	}
	d := now.Add(c.patience)
	if !c.readDL.IsZero() && !c.readDL.After(d) {
		return nil // the caller's deadline is earlier and already set
	}
	c.gatherDL = d
	return c.Conn.SetReadDeadline(d)
}

// clearGatherDeadline puts the caller's read deadline back.
func (c *pacedConn) clearGatherDeadline() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gatherDL.IsZero() {
		return nil
	}
	c.gatherDL = time.Time{}
	return c.Conn.SetReadDeadline(c.readDL)
}
