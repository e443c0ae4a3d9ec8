//go:build !linux

package shipper

import "net"

// quiet returns conn: quiet connections need Linux.
func quiet(conn net.Conn) net.Conn { return conn }
