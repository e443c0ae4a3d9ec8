//go:build !linux

package agent

import "net"

// newPacedSock returns nil: gathering needs Linux (pacedConn reads as a plain connection does).
func newPacedSock(net.Conn) pacedSock { return nil }
