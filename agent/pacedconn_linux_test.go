package agent

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			c = nil
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func write(t *testing.T, c net.Conn, n int) {
	t.Helper()
	if _, err := c.Write(bytes.Repeat([]byte{'x'}, n)); err != nil {
		t.Fatal(err)
	}
}

// TestTCPSockGather checks the kernel side of gathering: a read waits for the low-water mark, and
// only for it.
func TestTCPSockGather(t *testing.T) {
	const kib = 1 << 10
	client, server := tcpPair(t)
	sock := newPacedSock(client)
	if sock == nil {
		t.Fatal("no socket for a TCP connection")
	}
	if rb, err := sock.rcvbuf(); err != nil || rb <= 0 {
		t.Fatalf("receive buffer %d, %v", rb, err)
	}
	if err := sock.setLowat(16 * kib); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64*kib)

	// below the mark: the read waits until its deadline, then takes what has arrived
	write(t, server, 8*kib)
	set := time.Now()
	client.SetReadDeadline(set.Add(50 * time.Millisecond))
	if n, err := sock.gather(buf, 16*kib); n != 8*kib || err != nil {
		t.Fatalf("gathered %d bytes, %v with 8 KiB of a 16 KiB mark queued; want the 8 KiB at the deadline", n, err)
	}
	if waited := time.Since(set); waited < 50*time.Millisecond {
		t.Fatalf("gathered 8 KiB of a 16 KiB mark after %v, before the deadline", waited)
	}
	// nothing queued: the deadline's error
	if n, err := sock.gather(buf, 16*kib); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("gathered %d bytes, %v with nothing queued after the deadline; want the deadline", n, err)
	}

	// past the mark: the read takes what is queued
	client.SetReadDeadline(time.Now().Add(time.Minute)) // a failure, not a wait
	done := make(chan struct{})
	go func() {
		defer close(done)
		write(t, server, 4*kib)
		write(t, server, 12*kib)
	}()
	n, err := sock.gather(buf, 16*kib)
	<-done
	if err != nil || n < 16*kib {
		t.Fatalf("gathered %d bytes, %v with 24 KiB written; want 16 KiB or more", n, err)
	}
	if got, err := sock.(tcpSock).getsockopt(syscall.SO_RCVLOWAT); err != nil || got != 16*kib {
		t.Fatalf("SO_RCVLOWAT %d, %v; want %d", got, err, 16*kib)
	}
}

// TestPacedConnBodyEndBelowMark checks that a body whose end falls short of the mark on a
// connection that stays open is read whole: patience runs out and the gathering read takes the
// tail. The next read, with nothing more coming, is a plain one with the mark back at 1.
func TestPacedConnBodyEndBelowMark(t *testing.T) {
	client, server := tcpPair(t)
	const tail = 3 << 10 // below any mark: a quarter of the smallest receive buffer is larger
	headRead := make(chan struct{})
	go func() {
		for rest := paceAfter; rest > 0; rest -= 64 << 10 {
			if _, err := server.Write(make([]byte, min(rest, 64<<10))); err != nil {
				return
			}
		}
		<-headRead // the tail arrives on its own
		server.Write(make([]byte, tail))
	}()
	pc := newPacedConn(client)
	pc.SetReadDeadline(time.Now().Add(time.Minute)) // a failure, not a wait
	buf := make([]byte, 4096)
	got := 0
	for got < paceAfter+tail {
		n, err := pc.Read(buf)
		if err != nil {
			t.Fatalf("after %d of %d bytes: %v", got, paceAfter+tail, err)
		}
		if got < paceAfter && got+n >= paceAfter {
			close(headRead)
		}
		got += n
	}
	if got != paceAfter+tail {
		t.Fatalf("read %d bytes, want %d", got, paceAfter+tail)
	}
	// nothing more comes: the next read gathers until its patience runs out, then waits as a
	// plain read does, with the mark back at 1, until the caller's deadline
	pc.SetReadDeadline(time.Now().Add(maxPace + 100*time.Millisecond))
	if n, err := pc.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %d bytes, %v after the body; want the caller's deadline", n, err)
	}
	if lowat, err := pc.sock.(tcpSock).getsockopt(syscall.SO_RCVLOWAT); err != nil || lowat != 1 {
		t.Fatalf("SO_RCVLOWAT %d, %v after the body; want 1", lowat, err)
	}
}

// TestPacedConnCallerDeadline checks that a caller's read deadline ends a gathering read even
// when the pacedConn's patience is longer.
func TestPacedConnCallerDeadline(t *testing.T) {
	client, server := tcpPair(t)
	pc := newPacedConn(client)
	pc.patience = time.Hour
	write(t, server, paceAfter)
	if _, err := io.ReadFull(pc, make([]byte, paceAfter)); err != nil {
		t.Fatal(err)
	}
	pc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := pc.Read(make([]byte, 4096)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %d bytes, %v; want the deadline", n, err)
	}
	// the deadline is the caller's: lifting it lets the next read take the next byte once its
	// patience runs out
	pc.SetReadDeadline(time.Time{})
	pc.patience = maxPace
	write(t, server, 1)
	if n, err := pc.Read(make([]byte, 4096)); n != 1 || err != nil {
		t.Fatalf("read %d bytes, %v; want 1", n, err)
	}
}

// TestPacedConnTCP reads a body written in pieces of random sizes over a real connection through
// a pacedConn with random buffer sizes, and checks every byte arrives once and in order.
func TestPacedConnTCP(t *testing.T) {
	client, server := tcpPair(t)
	body := make([]byte, 6<<20)
	rng := rand.New(rand.NewSource(1))
	rng.Read(body)
	go func() {
		defer server.Close()
		rng := rand.New(rand.NewSource(2))
		for rest := body; len(rest) > 0; {
			n := min(1+rng.Intn(64<<10), len(rest))
			if _, err := server.Write(rest[:n]); err != nil {
				return
			}
			rest = rest[n:]
		}
	}()
	pc := newPacedConn(client)
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
