package portolan

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"overlaynet/ether"
	"overlaynet/portolan/store"
	"overlaynet/svpwire"
)

// Hosts whose underlay IPs are loopback addresses, so that a real TCP
// client can come from each: own comes from its underlay IP; far reaches
// portolan from farAdmin, a registered source address, as Triton's hosts
// do over their admin network.
var (
	own      = store.Host{ID: "own", IP: netip.MustParseAddr("127.0.0.7"), Port: 4789}
	far      = store.Host{ID: "far", IP: netip.MustParseAddr("198.18.0.50"), Port: 4789}
	farAdmin = netip.MustParseAddr("127.0.0.9")
)

// dialFrom connects to addr from the local address src (any address in
// 127.0.0.0/8 is the machine's own).
func dialFrom(t testing.TB, addr string, src netip.Addr) *client {
	t.Helper()
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	must(t, err)
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, r: svpwire.NewReader(c, 0)}
}

// ownershipStore holds own and far with VNICs on vnetid 42, added own,
// far, own: own's log holds 3 entries and far's 2.
func ownershipStore(t *testing.T, st *store.SQL) {
	ctx := context.Background()
	must(t, st.PutHost(ctx, own))
	must(t, st.SetHost(ctx, far, []netip.Addr{farAdmin}))
	must(t, st.AddVNIC(ctx, store.VNIC{VNetID: 42, MAC: mac1, Host: own.ID}))
	must(t, st.AddVNIC(ctx, store.VNIC{VNetID: 42, MAC: mac2, Host: far.ID}))
	must(t, st.AddVNIC(ctx, store.VNIC{VNetID: 42, MAC: ether.MAC{2, 8, 0x20, 0, 0, 3}, Host: own.ID}))
}

// logIDs reads a host's whole log straight from the store.
func logIDs(t *testing.T, st store.Store, h store.Host) [][16]byte {
	t.Helper()
	es, err := st.Log(context.Background(), h.IP, 1<<20)
	must(t, err)
	var ids [][16]byte
	for _, e := range es {
		ids = append(ids, e.ID)
	}
	return ids
}

// TestOwnershipRefusesSpoofing: a client that claims another host's
// underlay IP is refused its log (LOG_REQ) and cannot remove its entries
// (LOG_RM); the refusals are counted, and the other host's log is
// untouched. Its own log it may read and drain, and the connection stays
// usable.
func TestOwnershipRefusesSpoofing(t *testing.T) {
	eachStore(t, func(t *testing.T, st *store.SQL, _ string) {
		ownershipStore(t, st)
		s := startServer(t, st)
		farIDs := logIDs(t, st, far)
		if len(farIDs) != 2 {
			t.Fatalf("far's log holds %d entries, want 2", len(farIDs))
		}
		spoofer := dialFrom(t, s.addr, own.IP)

		// LOG_REQ claiming far's underlay IP, and its registered source.
		for _, claim := range []netip.Addr{far.IP, farAdmin, netip.AddrFrom16(far.IP.As16())} {
			if a, n := spoofer.log(claim, 1024); a.Status != svpwire.StatusFatal || n != 4 {
				t.Errorf("LOG_REQ from %s claiming %s: %+v, %d bytes; want FATAL and no entries", own.IP, claim, a, n)
			}
		}
		// LOG_RM of far's ids, alone and mixed with the spoofer's own.
		ownIDs := logIDs(t, st, own)
		if status := spoofer.logRm(farIDs...); status != svpwire.StatusFatal {
			t.Errorf("LOG_RM of far's entries from %s: %v, want FATAL", own.IP, status)
		}
		if status := spoofer.logRm(ownIDs[0], farIDs[1]); status != svpwire.StatusFatal {
			t.Errorf("LOG_RM of own and far's entries: %v, want FATAL", status)
		}
		if got := s.Refused(); got != 5 {
			t.Errorf("Refused() = %d, want 5", got)
		}
		if ids := logIDs(t, st, far); len(ids) != 2 || ids[0] != farIDs[0] || ids[1] != farIDs[1] {
			t.Errorf("far's log after the spoofing: %x, want %x", ids, farIDs)
		}
		if ids := logIDs(t, st, own); len(ids) != len(ownIDs) {
			t.Errorf("a refused LOG_RM removed some of own's entries: %x", ids)
		}

		// The same connection may act for its own host.
		if es := drainLog(t, spoofer, own.IP); len(es) != 3 {
			t.Errorf("own's log: %+v, want 3 entries", es)
		}
		if got := s.Refused(); got != 5 {
			t.Errorf("Refused() = %d after allowed requests, want still 5", got)
		}

		// A client from an address no host has is refused everything but
		// lookups.
		stranger := dialFrom(t, s.addr, netip.MustParseAddr("127.0.0.11"))
		if a, _ := stranger.log(own.IP, 1024); a.Status != svpwire.StatusFatal {
			t.Errorf("LOG_REQ from a stranger: %+v", a)
		}
		if status := stranger.logRm(farIDs[0]); status != svpwire.StatusFatal {
			t.Errorf("LOG_RM from a stranger: %v", status)
		}
		if a := stranger.vl2(42, mac2); a.Status != svpwire.StatusOK || a.Addr != far.IP {
			t.Errorf("VL2 from a stranger: %+v", a)
		}
		if ids := logIDs(t, st, far); len(ids) != 2 {
			t.Errorf("far's log after the stranger: %x", ids)
		}
		if got := s.Refused(); got != 7 {
			t.Errorf("Refused() = %d, want 7", got)
		}
	})
}

// TestOwnershipRegisteredSource: a host reaching portolan from a
// registered source address gets its log and removes its entries.
func TestOwnershipRegisteredSource(t *testing.T) {
	eachStore(t, func(t *testing.T, st *store.SQL, _ string) {
		ownershipStore(t, st)
		s := startServer(t, st)
		c := dialFrom(t, s.addr, farAdmin)
		if es := drainLog(t, c, far.IP); len(es) != 2 {
			t.Errorf("far's log from %s: %+v, want 2 entries", farAdmin, es)
		}
		waitFor(t, func() bool { return s.RemovalsPending() == 0 })
		if ids := logIDs(t, st, far); len(ids) != 0 {
			t.Errorf("far's log after LOG_RM from its source address: %x", ids)
		}
		// far's source address does not make it own.
		if a, _ := c.log(own.IP, 1024); a.Status != svpwire.StatusFatal {
			t.Errorf("LOG_REQ for own from far's source: %+v", a)
		}
		if got := s.Refused(); got != 1 {
			t.Errorf("Refused() = %d, want 1", got)
		}
		// Changing far's sources takes effect on the next request, on a
		// connection already open.
		must(t, st.SetHost(context.Background(), far, nil))
		if a, _ := c.log(far.IP, 1024); a.Status != svpwire.StatusFatal {
			t.Errorf("LOG_REQ after far's source was removed: %+v", a)
		}
	})
}

// TestOwnershipOff: with NoOwnershipCheck any client acts for any host,
// as before the check existed.
func TestOwnershipOff(t *testing.T) {
	eachStore(t, func(t *testing.T, st *store.SQL, _ string) {
		ownershipStore(t, st)
		s := startServer(t, st, func(s *Server) { s.NoOwnershipCheck = true })
		c := dialFrom(t, s.addr, own.IP)
		if es := drainLog(t, c, far.IP); len(es) != 2 {
			t.Errorf("far's log with the check off: %+v", es)
		}
		waitFor(t, func() bool { return s.RemovalsPending() == 0 })
		if ids := logIDs(t, st, far); len(ids) != 0 {
			t.Errorf("far's log after LOG_RM with the check off: %x", ids)
		}
		if got := s.Refused(); got != 0 {
			t.Errorf("Refused() = %d with the check off", got)
		}
	})
}

// TestOwnershipMappedSource: on a dual-stack listener an IPv4 client's
// address is IPv4-mapped; it compares as the IPv4 address, for the
// underlay IP and for a registered source. An IPv6 source works too.
func TestOwnershipMappedSource(t *testing.T) {
	t.Parallel()
	st := openStore(t, newDSN(t, "sqlite"))
	ownershipStore(t, st)
	six := store.Host{ID: "six", IP: netip.MustParseAddr("fd00:100::6"), Port: 4789}
	must(t, st.SetHost(context.Background(), six, []netip.Addr{netip.IPv6Loopback()}))
	ln, err := net.Listen("tcp", "[::]:0")
	if err != nil {
		t.Skipf("no IPv6 listener on this machine: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := &Server{Store: st, Log: testLogger(t)}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	port := ln.Addr().(*net.TCPAddr).Port

	v4 := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)).String()
	c := dialFrom(t, v4, own.IP)
	if got := c.c.LocalAddr().(*net.TCPAddr).AddrPort().Addr(); got != own.IP {
		t.Fatalf("client bound %s", got)
	}
	if es := drainLog(t, c, own.IP); len(es) != 3 {
		t.Errorf("own's log over a dual-stack listener: %+v", es)
	}
	if es := drainLog(t, dialFrom(t, v4, farAdmin), far.IP); len(es) != 2 {
		t.Errorf("far's log from its source over a dual-stack listener: %+v", es)
	}
	v6 := netip.AddrPortFrom(netip.IPv6Loopback(), uint16(port)).String()
	d := net.Dialer{Timeout: 5 * time.Second}
	if nc, err := d.Dial("tcp", v6); err != nil {
		if errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.ECONNREFUSED) {
			t.Logf("no IPv6 loopback: %v", err)
			return
		}
		t.Fatal(err)
	} else {
		nc.Close()
	}
	c6 := dialFrom(t, v6, netip.IPv6Loopback())
	if a, _ := c6.log(six.IP, 1024); a.Status != svpwire.StatusOK {
		t.Errorf("six's log from ::1: %+v", a)
	}
	if a, _ := c6.log(own.IP, 1024); a.Status != svpwire.StatusFatal {
		t.Errorf("own's log from ::1: %+v", a)
	}
	if got := srv.Refused(); got != 1 {
		t.Errorf("Refused() = %d, want 1", got)
	}
}
