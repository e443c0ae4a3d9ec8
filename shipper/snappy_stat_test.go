package shipper

import (
	"encoding/binary"
	"testing"

	"github.com/klauspost/compress/s2"
)

func blockStats(b []byte) (lits, litBytes, copies, copyBytes int) {
	_, n := binary.Uvarint(b)
	for i := n; i < len(b); {
		tag := b[i]
		switch tag & 3 {
		case 0:
			l := int(tag >> 2)
			i++
			switch {
			case l < 60:
			case l == 60:
				l = int(b[i])
				i++
			case l == 61:
				l = int(b[i]) | int(b[i+1])<<8
				i += 2
			default:
				panic("big literal")
			}
			lits++
			litBytes += l + 1
			i += l + 1
		case 1:
			copies++
			copyBytes += int(tag>>2&7) + 4
			i += 2
		case 2:
			copies++
			copyBytes += int(tag>>2) + 1
			i += 3
		case 3:
			copies++
			copyBytes += int(tag>>2) + 1
			i += 5
		}
	}
	return
}

func TestSnappyStats(t *testing.T) {
	labels := realisticSeries(20_000)
	reqs := realisticRequests(labels, 2000, 1)
	var p protoSnappy
	for _, c := range []struct {
		name string
		enc  func(dst, src []byte) []byte
	}{{"s2", s2.EncodeSnappy}, {"proto", p.encode}, {"diff", diffSnappy{}.encode}} {
		var L, LB, C, CB, out int
		for _, req := range reqs {
			raw, _ := appendWriteRequest(nil, req)
			blk := c.enc(nil, raw)
			l, lb, cc, cb := blockStats(blk)
			L += l
			LB += lb
			C += cc
			CB += cb
			out += len(blk)
		}
		n := float64(len(reqs) * 2000)
		t.Logf("%s: %.1f B/sample, literals %.2f (%.1f bytes), copies %.2f (%.1f bytes) per sample", c.name, float64(out)/n, float64(L)/n, float64(LB)/n, float64(C)/n, float64(CB)/n)
	}
}
