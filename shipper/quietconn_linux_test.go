package shipper

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// quietPair returns a quiet connection dialled on loopback and the server's end of it.
func quietPair(t *testing.T) (*quietConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	conn, err := dialQuiet(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server := <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { conn.Close(); server.Close() })
	qc, ok := conn.(*quietConn)
	if !ok {
		t.Fatalf("dialQuiet returned a %T for TCP", conn)
	}
	return qc, server
}

// copyRandom writes n random bytes to w in random pieces and returns their hash.
func copyRandom(w io.Writer, n int, rng *rand.Rand) ([32]byte, error) {
	buf := make([]byte, n)
	rng.Read(buf)
	for rest := buf; len(rest) > 0; {
		k := min(len(rest), 1+rng.Intn(256<<10))
		m, err := w.Write(rest[:k])
		if err != nil {
			return [32]byte{}, err
		}
		if m != k {
			return [32]byte{}, io.ErrShortWrite
		}
		rest = rest[k:]
	}
	return sha256.Sum256(buf), nil
}

// readHash reads r to EOF in random pieces and returns the bytes' hash and count.
func readHash(r io.Reader, rng *rand.Rand) ([32]byte, int, error) {
	h := sha256.New()
	buf := make([]byte, 1<<20)
	var total int
	for {
		n, err := r.Read(buf[:1+rng.Intn(len(buf))])
		h.Write(buf[:n])
		total += n
		if err == io.EOF {
			var sum [32]byte
			copy(sum[:], h.Sum(nil))
			return sum, total, nil
		}
		if err != nil {
			return [32]byte{}, total, err
		}
	}
}

// TestQuietConnTransfers sends 8 MiB each way at once, in random pieces, through socket buffers
// small enough that writes wait for the poller, and compares what arrived.
func TestQuietConnTransfers(t *testing.T) {
	const size = 8 << 20
	qc, server := quietPair(t)
	if err := qc.SetWriteBuffer(16 << 10); err != nil {
		t.Fatal(err)
	}
	if err := server.(*net.TCPConn).SetReadBuffer(16 << 10); err != nil {
		t.Fatal(err)
	}
	type result struct {
		sum [32]byte
		n   int
		err error
	}
	sent := make(chan result, 2)
	go func() { // the client's bytes
		sum, err := copyRandom(qc, size, rand.New(rand.NewSource(1)))
		if err == nil {
			err = qc.CloseWrite()
		}
		sent <- result{sum, size, err}
	}()
	go func() { // the server's bytes
		sum, err := copyRandom(server, size, rand.New(rand.NewSource(2)))
		if err == nil {
			err = server.(*net.TCPConn).CloseWrite()
		}
		sent <- result{sum, size, err}
	}()
	got := make(chan result, 1)
	go func() {
		sum, n, err := readHash(server, rand.New(rand.NewSource(3)))
		got <- result{sum, n, err}
	}()
	atClient, n, err := readHash(qc, rand.New(rand.NewSource(4)))
	if err != nil || n != size {
		t.Fatalf("the client read %d bytes, %v; want %d", n, err, size)
	}
	atServer := <-got
	if atServer.err != nil || atServer.n != size {
		t.Fatalf("the server read %d bytes, %v; want %d", atServer.n, atServer.err, size)
	}
	for range 2 {
		s := <-sent
		if s.err != nil {
			t.Fatal(s.err)
		}
		if s.sum != atClient && s.sum != atServer.sum {
			t.Fatal("the bytes that arrived are not the bytes sent")
		}
	}
	if atClient == atServer.sum {
		t.Fatal("both ends read the same bytes")
	}
}

// TestQuietConnDeadlines checks that read and write deadlines end a wait as net's do.
func TestQuietConnDeadlines(t *testing.T) {
	qc, _ := quietPair(t)
	if err := qc.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	n, err := qc.Read(make([]byte, 10))
	var ne net.Error
	if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past the deadline: %d, %v; want 0, a timeout", n, err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("read past the deadline: %#v, want a *net.OpError of read", err)
	}
	// the server never reads: the write fills both socket buffers, then waits until the deadline
	if err := qc.SetWriteBuffer(16 << 10); err != nil {
		t.Fatal(err)
	}
	if err := qc.SetWriteDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 64<<20)
	n, err = qc.Write(big)
	if n >= len(big) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write past the deadline: %d of %d bytes, %v; want fewer, a timeout", n, len(big), err)
	}
	if !errors.As(err, &oe) || oe.Op != "write" {
		t.Fatalf("write past the deadline: %#v, want a *net.OpError of write", err)
	}
}

// TestQuietConnPeerGone checks the end of a connection: EOF after the peer's close, an error
// (never a signal) writing after the peer is gone, net.ErrClosed after our own Close.
func TestQuietConnPeerGone(t *testing.T) {
	qc, server := quietPair(t)
	if _, err := server.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	server.Close()
	b, err := io.ReadAll(qc)
	if string(b) != "bye" || err != nil {
		t.Fatalf("read %q, %v; want bye then EOF", b, err)
	}
	// the first write reaches a closed socket, which answers with a reset; the writes after it
	// fail once the reset has arrived
	var werr error
	for end := time.Now().Add(10 * time.Second); werr == nil && time.Now().Before(end); {
		_, werr = qc.Write([]byte("more"))
		runtime.Gosched()
	}
	if !errors.Is(werr, syscall.EPIPE) && !errors.Is(werr, syscall.ECONNRESET) {
		t.Fatalf("write after the peer's close: %v, want EPIPE or ECONNRESET", werr)
	}
	var oe *net.OpError
	if !errors.As(werr, &oe) || oe.Op != "write" {
		t.Fatalf("write after the peer's close: %#v, want a *net.OpError of write", werr)
	}
	qc.Close()
	if _, err := qc.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after Close: %v, want net.ErrClosed", err)
	}
	if _, err := qc.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after Close: %v, want net.ErrClosed", err)
	}
}
