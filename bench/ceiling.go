package bench

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"overlaynet/svpwire"
)

// The ceiling is the bare in-memory server the svp benchmark measures
// portolan against: VL2 answers from a Go map, one goroutine per
// connection reading frames with svpwire.NewReader and writing the replies of
// everything one read brought in with one write. Nothing a real server
// must do (a store, an index kept current, logs, ownership, limits) is in
// it, so it bounds what any SVP server in Go can reach on this machine.
//
// It runs as a child process (this executable again, told by ceilingEnv)
// so that it can be constrained exactly like portolan: GOMAXPROCS=1 and
// pinned to the same CPU.

// ceilingEnv, when set in the environment to "ADDR MAPPINGS", makes
// CeilingMain serve instead of returning.
const ceilingEnv = "OVERLAYBENCH_CEILING"

// benchHost is where every benchmark mapping lives.
var benchHost = netip.MustParseAddr("198.18.0.1")

const benchPort = 4789

// CeilingMain serves as the ceiling server and exits if this process was
// started as one; otherwise it returns at once. Call it first thing in
// main (and in TestMain of tests that run the svp benchmark).
func CeilingMain() {
	v := os.Getenv(ceilingEnv)
	if v == "" {
		return
	}
	addr, n, _ := strings.Cut(v, " ")
	mappings, err := strconv.Atoi(n)
	if err == nil {
		err = serveCeiling(addr, mappings)
	}
	fmt.Fprintln(os.Stderr, "ceiling:", err)
	os.Exit(1)
}

func macKey(vnetid uint32, mac [6]byte) uint64 {
	return uint64(vnetid)<<48 | uint64(mac[0])<<40 | uint64(mac[1])<<32 | uint64(mac[2])<<24 |
		uint64(mac[3])<<16 | uint64(mac[4])<<8 | uint64(mac[5])
}

func serveCeiling(addr string, mappings int) error {
	m := make(map[uint64]uint32, mappings) // key -> host index
	for i := 0; i < mappings; i++ {
		m[macKey(1, benchMAC(i))] = 0
	}
	hosts := []svpwire.VL2Ack{{Status: svpwire.StatusOK, Port: benchPort, Addr: benchHost}}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go ceilingConn(c, m, hosts)
	}
}

func ceilingConn(c net.Conn, m map[uint64]uint32, hosts []svpwire.VL2Ack) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 4096)
	r := svpwire.NewReader(br, 0) // uses br as is
	var out []byte
	for {
		f, err := r.Next()
		if err != nil {
			return
		}
		switch f.Op {
		case svpwire.OpVL2Req:
			req, err := svpwire.DecodeVL2Req(f.Body)
			if err != nil {
				return
			}
			ack := svpwire.VL2Ack{Status: svpwire.StatusNotFound}
			if h, ok := m[macKey(req.VNetID, req.MAC)]; ok {
				ack = hosts[h]
			}
			out = ack.AppendFrame(out, f.ID)
		case svpwire.OpPing:
			out = svpwire.AppendFrame(out, svpwire.OpPong, f.ID, nil)
		default:
			return
		}
		if br.Buffered() == 0 {
			if _, err := c.Write(out); err != nil {
				return
			}
			out = out[:0]
		}
	}
}
