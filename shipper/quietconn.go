package shipper

import (
	"context"
	"net"
)

// Connections to the endpoint read and write without telling the Go scheduler.
//
// A remote-write request is a few hundred KiB at most, sent on a connection that is almost
// always writable, and its response is one small read: the reads and writes of the socket
// (non-blocking, as every socket of the Go runtime) never block. Announced to the scheduler as
// net's reads and writes are, each one that follows an idle moment, here every request (the
// process waits for each response), wakes the runtime's sysmon thread, which then polls every
// 20 µs (about 140 µs on a VM) for as long as the process stays busy: on a 2-core VM those
// thread switches made most of the kernel time of shipping. A quiet connection makes the same
// calls raw, through the connection's syscall.RawConn, so that when the socket is not ready the
// network poller waits as for any connection, and deadlines hold as they do for net's reads and
// writes. It needs Linux; elsewhere dialQuiet returns the plain connection.

// dialQuiet dials as prometheus/common does without a dial function (a zero net.Dialer,
// go-conntrack around it) and makes the reads and writes of a TCP connection quiet.
func dialQuiet(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return quiet(conn), nil
}
