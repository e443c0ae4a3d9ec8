package agent

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand"
	"net"
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

type paceClock struct {
	t     time.Time
	waits []time.Duration
}

func (c *paceClock) now() time.Time { return c.t }

func (c *paceClock) sleep(d time.Duration) {
	c.waits = append(c.waits, d)
	c.t = c.t.Add(d)
}

func newScripted(rcvbuf int, script ...step) (*pacedConn, *scriptConn, *paceClock) {
	clock := &paceClock{t: time.Unix(1e9, 0)}
	sc := &scriptConn{clock: clock, script: script}
	pc := &pacedConn{Conn: sc, sleep: clock.sleep, now: clock.now}
	if rcvbuf > 0 {
		pc.rcvbuf = func() (int, bool) { return rcvbuf, true }
	}
	return pc, sc, clock
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

func TestPacedConnWaits(t *testing.T) {
	const kib = 1 << 10
	big := 64 << 20 // a receive buffer that never bounds the reads below
	tests := []struct {
		name   string
		rcvbuf int
		script []step
		want   []time.Duration
	}{{
		name:   "a small body is read as it comes",
		rcvbuf: big,
		script: repeat(step{n: 4 * kib}, paceAfter/(4*kib)),
	}, {
		name:   "a trickle past paceAfter waits, doubling to maxPace",
		rcvbuf: big,
		script: repeat(step{n: 64 * kib}, paceAfter/(64*kib)+8),
		// the first read into the whole buffer after paceAfter arms minPace; each read after a
		// wait is still short; the last wait is before the read that finds EOF
		want: []time.Duration{1, 2, 4, 8, 16, 20, 20, 20}, // ms
	}, {
		name:   "a body that fills the buffer never waits",
		rcvbuf: big,
		script: repeat(step{n: paceBuffer}, 8),
	}, {
		name:   "reads that take a quarter of the receive buffer halve the wait",
		rcvbuf: 256 * kib,
		script: append(repeat(step{n: 32 * kib}, paceAfter/(32*kib)+5), repeat(step{n: 64 * kib}, 4)...),
		// 32 KiB reads double the wait; 64 KiB reads after a wait are window-bound: 16 -> 8 -> 4 ...
		// The last wait is before the read that finds EOF.
		want: []time.Duration{1, 2, 4, 8, 16, 8, 4, 2, 1},
	}, {
		name:   "a read that blocked a second begins a new body",
		rcvbuf: big,
		script: append(append(repeat(step{n: 64 * kib}, paceAfter/(64*kib)+2),
			step{n: 64 * kib, block: quietGap}),
			repeat(step{n: 64 * kib}, 3)...),
		// the first read after paceAfter arms the wait, 1 ms before the second, 2 ms before the
		// one that blocked; then nothing: the new body is below paceAfter again
		want: []time.Duration{1, 2},
	}, {
		name:   "without the receive buffer's size nothing waits",
		script: repeat(step{n: 4 * kib}, 2*paceAfter/(4*kib)),
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pc, sc, clock := newScripted(tt.rcvbuf, tt.script...)
			var want int
			for _, s := range tt.script {
				want += s.n
			}
			n, err := drain(t, pc, 32*kib)
			if n != want || err != io.EOF {
				t.Fatalf("read %d bytes, %v; want %d, EOF", n, err, want)
			}
			var wantWaits []time.Duration
			for _, w := range tt.want {
				wantWaits = append(wantWaits, w*time.Millisecond)
			}
			if len(clock.waits) != len(wantWaits) {
				t.Fatalf("waits %v, want %v", clock.waits, wantWaits)
			}
			for i := range wantWaits {
				if clock.waits[i] != wantWaits[i] {
					t.Fatalf("waits %v, want %v", clock.waits, wantWaits)
				}
			}
			if tt.rcvbuf == 0 {
				for _, c := range sc.calls {
					if c != 32*kib {
						t.Fatalf("read into a buffer of %d, want the caller's 32 KiB", c)
					}
				}
			}
		})
	}
}

// TestPacedConnQuietStart checks that a read starting quietGap after the last begins a new body.
func TestPacedConnQuietStart(t *testing.T) {
	const kib = 1 << 10
	pc, _, clock := newScripted(64<<20, repeat(step{n: 64 * kib}, paceAfter/(64*kib)+3)...)
	buf := make([]byte, 64*kib)
	for range paceAfter/(64*kib) + 2 {
		if _, err := pc.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	if len(clock.waits) != 1 || pc.pace != 2*time.Millisecond {
		t.Fatalf("waits %v and next %v past paceAfter, want [1ms] and 2ms", clock.waits, pc.pace)
	}
	clock.t = clock.t.Add(quietGap)
	if _, err := pc.Read(buf); err != nil {
		t.Fatal(err)
	}
	if len(clock.waits) != 1 || pc.pace != 0 || pc.streak != 64*kib {
		t.Fatalf("after a quiet second: waits %v, next %v, streak %d; want [1ms], 0, %d", clock.waits, pc.pace, pc.streak, 64*kib)
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

// TestPacedConnTCP reads a body written in pieces of random sizes over a real connection through
// a pacedConn with random buffer sizes, and checks every byte arrives once and in order.
func TestPacedConnTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	body := make([]byte, 6<<20)
	rng := rand.New(rand.NewSource(1))
	rng.Read(body)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		rng := rand.New(rand.NewSource(2))
		for rest := body; len(rest) > 0; {
			n := min(1+rng.Intn(64<<10), len(rest))
			if _, err := c.Write(rest[:n]); err != nil {
				return
			}
			rest = rest[n:]
		}
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pc := newPacedConn(conn)
	if pc.rcvbuf == nil {
		t.Fatal("no receive buffer size for a TCP connection")
	}
	if rb, ok := pc.rcvbuf(); !ok || rb <= 0 {
		t.Fatalf("receive buffer %d, %v", rb, ok)
	}
	pc.sleep = func(time.Duration) {} // the bytes, not the timing, are under test
	var got bytes.Buffer
	buf := make([]byte, 2*paceBuffer)
	for {
		n, err := pc.Read(buf[:1+rng.Intn(len(buf))])
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if got.Len() != len(body) || sha256.Sum256(got.Bytes()) != sha256.Sum256(body) {
		t.Fatalf("read %d bytes differing from the %d written", got.Len(), len(body))
	}
}
