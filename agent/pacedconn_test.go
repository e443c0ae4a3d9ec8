package agent

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// scriptConn returns reads of the sizes of its script (capped by the caller's buffer), each
// after advancing the fake clock by its block time, then EOF. The bytes count up, so that a
// reader can check it got every byte once and in order.
type scriptConn struct {
	net.Conn
	clock  *paceClock
	script []step
	next   byte
	calls  []int // the buffer size of every Read
	dls    []time.Time
}

type step struct {
	n     int
	block time.Duration
	err   error
}

func (s *scriptConn) Read(p []byte) (int, error) {
	s.calls = append(s.calls, len(p))
	if len(s.script) == 0 {
		return 0, io.EOF
	}
	st := &s.script[0]
	s.clock.t = s.clock.t.Add(st.block)
	st.block = 0
	n := min(st.n, len(p))
	for i := range n {
		p[i] = s.next
		s.next++
	}
	st.n -= n
	if st.n > 0 {
		return n, nil
	}
	err := st.err
	s.script = s.script[1:]
	return n, err
}

func (s *scriptConn) SetReadDeadline(t time.Time) error {
	s.dls = append(s.dls, t)
	return nil
}

type paceClock struct{ t time.Time }

func (c *paceClock) now() time.Time { return c.t }

// scriptSock gathers by reading its scriptConn, and records what it was asked.
type scriptSock struct {
	conn    *scriptConn
	buf     int
	lowats  []int
	targets []int
	fail    error       // returned by the next gather instead of reading
	dls     []time.Time // the connection's read deadline at each gather
	before  func()      // called at each gather
}

func (s *scriptSock) rcvbuf() (int, error) { return s.buf, nil }

func (s *scriptSock) setLowat(n int) error {
	s.lowats = append(s.lowats, n)
	return nil
}

func (s *scriptSock) gather(p []byte, target int) (int, error) {
	s.targets = append(s.targets, target)
	var dl time.Time
	if k := len(s.conn.dls); k > 0 {
		dl = s.conn.dls[k-1]
	}
	s.dls = append(s.dls, dl)
	if s.before != nil {
		s.before()
	}
	if err := s.fail; err != nil {
		s.fail = nil
		return 0, err
	}
	return s.conn.Read(p)
}

func newScripted(rcvbuf int, script ...step) (*pacedConn, *scriptConn, *scriptSock) {
	clock := &paceClock{t: time.Unix(1e9, 0)}
	sc := &scriptConn{clock: clock, script: script}
	ss := &scriptSock{conn: sc, buf: rcvbuf}
	pc := &pacedConn{Conn: sc, sock: ss, patience: maxPace, now: clock.now}
	return pc, sc, ss
}

// drain reads pc to EOF with a buffer of size and checks the count-up bytes.
func drain(t *testing.T, pc *pacedConn, size int) (int, error) {
	t.Helper()
	buf := make([]byte, size)
	var total int
	var want byte
	for {
		n, err := pc.Read(buf)
		for _, b := range buf[:n] {
			if b != want {
				t.Fatalf("byte %d is %d, want %d", total, b, want)
			}
			want++
			total++
		}
		if err != nil {
			return total, err
		}
	}
}

func repeat(s step, n int) []step {
	out := make([]step, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func TestPacedConnGathers(t *testing.T) {
	const kib = 1 << 10
	big := 64 << 20 // a receive buffer that never bounds the target below
	// half is the target, in KiB, when the receive buffer does not bound it
	const half = paceBuffer / 2 / kib
	tests := []struct {
		name    string
		rcvbuf  int
		script  []step
		targets []int // of the gathering reads, in KiB
		plain   int   // reads into the 1 MiB buffer that do not gather (the EOF after a gathering read is one)
	}{{
		name:   "a small body is read as it comes",
		rcvbuf: big,
		script: repeat(step{n: 4 * kib}, paceAfter/(4*kib)-1),
	}, {
		name:   "a trickle past paceAfter gathers half the buffer",
		rcvbuf: big,
		script: repeat(step{n: 64 * kib}, paceAfter/(64*kib)+3),
		// the reads past paceAfter, and the one that finds EOF, then reads it again plainly
		targets: []int{half, half, half, half},
		plain:   1,
	}, {
		name:   "a body that fills the buffer is read as it comes",
		rcvbuf: big,
		script: repeat(step{n: paceBuffer}, 4),
		// the first two reads past paceAfter gather: the first takes the rest of a step, the
		// second fills the buffer
		targets: []int{half, half},
		plain:   3,
	}, {
		name:    "the target is a quarter of the receive buffer at most",
		rcvbuf:  256 * kib,
		script:  repeat(step{n: 128 * kib}, paceAfter/(128*kib)+1),
		targets: []int{64, 64},
		plain:   1,
	}, {
		name:   "a read that blocked a second begins a new body",
		rcvbuf: big,
		script: append(append(repeat(step{n: 64 * kib}, paceAfter/(64*kib)+1),
			step{n: 16 * kib, block: quietGap}),
			repeat(step{n: 16 * kib}, 2)...),
		// the read past paceAfter gathers, and the one that blocked; the rest is a new body,
		// shorter than paceAfter
		targets: []int{half, half},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pc, sc, ss := newScripted(tt.rcvbuf, tt.script...)
			var want int
			for _, s := range tt.script {
				want += s.n
			}
			n, err := drain(t, pc, 32*kib)
			if n != want || err != io.EOF {
				t.Fatalf("read %d bytes, %v; want %d, EOF", n, err, want)
			}
			if len(ss.targets) != len(tt.targets) {
				t.Fatalf("gathered with targets %v, want %v KiB", ss.targets, tt.targets)
			}
			for i, k := range tt.targets {
				if ss.targets[i] != k*kib {
					t.Fatalf("gathered with targets %v, want %v KiB", ss.targets, tt.targets)
				}
			}
			plain := 0
			for _, c := range sc.calls {
				switch c {
				case paceBuffer:
					plain++
				case 32 * kib:
				default:
					t.Fatalf("read into a buffer of %d", c)
				}
			}
			if plain -= len(ss.targets); plain != tt.plain {
				t.Fatalf("%d plain reads into the buffer, want %d", plain, tt.plain)
			}
			// the clock stands still: the first gathering read's deadline served them all, and
			// the caller's (none) came back before the first plain read after them
			for i, dl := range ss.dls {
				if !dl.Equal(time.Unix(1e9, 0).Add(maxPace)) {
					t.Fatalf("gathering read %d under the deadline %v", i, dl)
				}
			}
			sets := 0
			if len(ss.targets) > 0 {
				sets = 2
			}
			if len(sc.dls) != sets || sets > 0 && (sc.dls[0].IsZero() || !sc.dls[1].IsZero()) {
				t.Fatalf("deadlines set %v, want the gathering reads' then none", sc.dls)
			}
		})
	}
}

// TestPacedConnLowat checks that the low-water mark is set for a gathering read only, and back at
// 1 before any other read.
func TestPacedConnLowat(t *testing.T) {
	const kib = 1 << 10
	script := append(repeat(step{n: 64 * kib}, paceAfter/(64*kib)+2), step{n: 64 * kib, block: quietGap}, step{n: 4 * kib})
	pc, _, ss := newScripted(64<<20, script...)
	if _, err := drain(t, pc, 32*kib); err != io.EOF {
		t.Fatal(err)
	}
	// two gathering reads at half the buffer (one mark), the one that blocked, then the new
	// body's plain read
	want := []int{paceBuffer / 2, 1}
	if len(ss.lowats) != len(want) || ss.lowats[0] != want[0] || ss.lowats[1] != want[1] {
		t.Fatalf("marks set %v, want %v", ss.lowats, want)
	}
}

// TestPacedConnGatherFails checks that a gathering read that runs out of patience, or fails,
// becomes a plain read with the mark back at 1.
func TestPacedConnGatherFails(t *testing.T) {
	for _, fail := range []error{os.ErrDeadlineExceeded, errors.New("connection reset")} {
		pc, _, ss := newScripted(64<<20, step{n: paceAfter}, step{n: 100})
		buf := make([]byte, 4096)
		for pc.streak < paceAfter {
			if _, err := pc.Read(buf); err != nil {
				t.Fatal(err)
			}
		}
		ss.fail = fail
		n, err := drain(t, pc, 4096)
		if err != io.EOF || n != 100 {
			t.Fatalf("after %v: read %d bytes, %v; want 100, EOF", fail, n, err)
		}
		if len(ss.lowats) < 2 || ss.lowats[1] != 1 {
			t.Fatalf("after %v: marks %v, want half the buffer then 1", fail, ss.lowats)
		}
	}
}

func TestPacedConnErrorAfterBytes(t *testing.T) {
	boom := errors.New("connection reset")
	pc, _, _ := newScripted(64<<20, step{n: paceAfter}, step{n: 100, err: boom})
	n, err := drain(t, pc, 30)
	if n != paceAfter+100 || !errors.Is(err, boom) {
		t.Fatalf("read %d bytes, %v; want %d, %v", n, err, paceAfter+100, boom)
	}
}

// TestPacedConnGatherDeadline checks that every gathering read waits for at most the patience,
// and that the deadline is set again only once it has passed: a deadline moved before it is due
// still wakes the process when it was due.
func TestPacedConnGatherDeadline(t *testing.T) {
	const kib = 1 << 10
	script := repeat(step{n: 64 * kib}, paceAfter/(64*kib))
	script = append(script, repeat(step{n: 64 * kib, block: maxPace / 8}, 40)...)
	pc, sc, ss := newScripted(64<<20, script...)
	var starts []time.Time
	ss.before = func() { starts = append(starts, pc.now()) }
	if _, err := drain(t, pc, 32*kib); err != io.EOF {
		t.Fatal(err)
	}
	if len(ss.targets) != 41 { // the last finds EOF
		t.Fatalf("%d gathering reads, want 41", len(ss.targets))
	}
	for i, dl := range ss.dls {
		if left := dl.Sub(starts[i]); left <= 0 || left > maxPace {
			t.Fatalf("gathering read %d waits for at most %v, want more than 0 and at most %v", i, left, maxPace)
		}
	}
	// reads of maxPace/8 each: the deadline set by the first gathering read serves eight, the
	// ninth starts when it passes and sets the next; 41 gathering reads set 6, then the
	// caller's (none) comes back for the plain read of the EOF
	if n := len(sc.dls); n != 7 || !sc.dls[n-1].IsZero() {
		t.Fatalf("deadlines set %v", sc.dls)
	}
	for i := 1; i < len(sc.dls)-1; i++ {
		if got := sc.dls[i].Sub(sc.dls[i-1]); got != maxPace {
			t.Fatalf("deadlines set %v: %v apart, want %v (each set when the last passed)", sc.dls, got, maxPace)
		}
	}
}

// TestPacedConnDeadlines checks that a caller's read deadline set during a gathering read waits
// for it when later, and takes over when earlier.
func TestPacedConnDeadlines(t *testing.T) {
	pc, sc, _ := newScripted(64 << 20)
	t0 := time.Unix(1e9, 0)
	if err := pc.renewGatherDeadline(t0); err != nil {
		t.Fatal(err)
	}
	later, earlier := t0.Add(time.Second), t0.Add(time.Millisecond)
	pc.SetReadDeadline(later) // kept for after the gathering read
	pc.SetReadDeadline(earlier)
	pc.clearGatherDeadline()
	want := []time.Time{t0.Add(maxPace), earlier, earlier}
	if len(sc.dls) != len(want) {
		t.Fatalf("deadlines set %v, want %v", sc.dls, want)
	}
	for i := range want {
		if !sc.dls[i].Equal(want[i]) {
			t.Fatalf("deadlines set %v, want %v", sc.dls, want)
		}
	}
	// with the caller's deadline earlier than the gathering read's, it stays
	sc.dls = nil
	if err := pc.renewGatherDeadline(t0); err != nil {
		t.Fatal(err)
	}
	pc.clearGatherDeadline()
	if len(sc.dls) != 0 {
		t.Fatalf("deadlines set %v, want none: the caller's is earlier", sc.dls)
	}
}
