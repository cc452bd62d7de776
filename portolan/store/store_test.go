package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"overlaynet/ether"
	"overlaynet/pgtemp"
)

var pg *pgtemp.Server

func TestMain(m *testing.M) {
	var err error
	if pg, err = pgtemp.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "store tests need PostgreSQL:", err)
		os.Exit(1)
	}
	code := m.Run()
	pg.Stop()
	os.Exit(code)
}

var dbSeq int

// eachStore runs fn against a fresh SQLite store and a fresh PostgreSQL
// database: both implementations pass one suite.
func eachStore(t *testing.T, fn func(t *testing.T, s *SQL)) {
	ctx := context.Background()
	t.Run("sqlite", func(t *testing.T) {
		s, err := Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "portolan.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		fn(t, s)
	})
	t.Run("postgres", func(t *testing.T) {
		admin, err := Open(ctx, pg.DSN)
		if err != nil {
			t.Fatal(err)
		}
		dbSeq++
		name := fmt.Sprintf("t%d_%d", os.Getpid(), dbSeq)
		if _, err := admin.db.Exec("CREATE DATABASE " + name); err != nil {
			t.Fatal(err)
		}
		admin.Close()
		s, err := Open(ctx, replaceDB(pg.DSN, name))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		fn(t, s)
	})
}

func replaceDB(dsn, name string) string {
	return "postgres://postgres@/" + name + dsn[len("postgres://postgres@/postgres"):]
}

var (
	ctx   = context.Background()
	mac1  = ether.MAC{2, 8, 0x20, 0, 0, 1}
	mac2  = ether.MAC{2, 8, 0x20, 0, 0, 2}
	ip1   = netip.MustParseAddr("10.0.0.1")
	ip6   = netip.MustParseAddr("fd00::1")
	hostA = Host{ID: "a", IP: netip.MustParseAddr("198.18.0.1"), Port: 4789}
	hostB = Host{ID: "b", IP: netip.MustParseAddr("198.18.0.2"), Port: 4789}
	hostC = Host{ID: "c", IP: netip.MustParseAddr("fd00:100::3"), Port: 4790}
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestLookups(t *testing.T) {
	eachStore(t, func(t *testing.T, s *SQL) {
		must(t, s.PutHost(ctx, hostA))
		must(t, s.PutHost(ctx, hostC))
		must(t, s.AddVNIC(ctx, VNIC{VNetID: 42, MAC: mac1, Host: "a", IPs: []netip.Addr{ip1, ip6}}))
		must(t, s.AddVNIC(ctx, VNIC{VNetID: 42, MAC: mac2, VLAN: 7, Host: "c"}))

		h, ok, err := s.VL2(ctx, 42, mac1)
		if err != nil || !ok || h != hostA {
			t.Errorf("VL2 mac1: %+v %v %v", h, ok, err)
		}
		h, ok, _ = s.VL2(ctx, 42, mac2)
		if !ok || h != hostC {
			t.Errorf("VL2 mac2: %+v %v", h, ok)
		}
		if _, ok, _ := s.VL2(ctx, 43, mac1); ok {
			t.Error("VL2 found mac1 on another vnetid")
		}
		for _, ip := range []netip.Addr{ip1, ip6, netip.MustParseAddr("::ffff:10.0.0.1")} {
			mac, h, ok, err := s.VL3(ctx, 42, ip)
			if err != nil || !ok || mac != mac1 || h != hostA {
				t.Errorf("VL3 %s: %v %+v %v %v", ip, mac, h, ok, err)
			}
		}
		if _, _, ok, _ := s.VL3(ctx, 42, netip.MustParseAddr("10.0.0.9")); ok {
			t.Error("VL3 found an unknown address")
		}
		vs, err := s.VNICs(ctx, 42, false)
		must(t, err)
		if len(vs) != 2 || len(vs[0].IPs) != 2 || vs[1].VLAN != 7 {
			t.Errorf("VNICs: %+v", vs)
		}
	})
}

func TestErrors(t *testing.T) {
	eachStore(t, func(t *testing.T, s *SQL) {
		must(t, s.PutHost(ctx, hostA))
		must(t, s.PutHost(ctx, hostB))
		if err := s.PutHost(ctx, Host{ID: "x", IP: hostA.IP, Port: 1}); !errors.Is(err, ErrExists) {
			t.Errorf("second host on one address: %v", err)
		}
		if err := s.AddVNIC(ctx, VNIC{VNetID: 1, MAC: mac1, Host: "nosuch"}); !errors.Is(err, ErrNotFound) {
			t.Errorf("VNIC on a missing host: %v", err)
		}
		must(t, s.AddVNIC(ctx, VNIC{VNetID: 1, MAC: mac1, Host: "a", IPs: []netip.Addr{ip1}}))
		if err := s.AddVNIC(ctx, VNIC{VNetID: 1, MAC: mac1, Host: "b"}); !errors.Is(err, ErrExists) {
			t.Errorf("duplicate VNIC: %v", err)
		}
		if err := s.AddVNIC(ctx, VNIC{VNetID: 1, MAC: mac2, Host: "b", IPs: []netip.Addr{ip1}}); !errors.Is(err, ErrExists) {
			t.Errorf("address of another VNIC: %v", err)
		}
		if _, ok, _ := s.VL2(ctx, 1, mac2); ok {
			t.Error("a failed add left the VNIC behind")
		}
		if err := s.RemoveHost(ctx, "a"); !errors.Is(err, ErrInUse) {
			t.Errorf("removing a host with VNICs: %v", err)
		}
		if err := s.MoveVNIC(ctx, 1, mac2, "b"); !errors.Is(err, ErrNotFound) {
			t.Errorf("moving a missing VNIC: %v", err)
		}
		if err := s.RemoveVNIC(ctx, 1, mac2); !errors.Is(err, ErrNotFound) {
			t.Errorf("removing a missing VNIC: %v", err)
		}
		if _, err := s.Log(ctx, netip.MustParseAddr("192.0.2.1"), 1024); !errors.Is(err, ErrUnknownHost) {
			t.Errorf("log of an unknown host: %v", err)
		}
	})
}

// TestLogOnChanges: every change logs entries for every host on the vnetid
// (before and after), and hosts drain their logs with RemoveLog.
func TestLogOnChanges(t *testing.T) {
	eachStore(t, func(t *testing.T, s *SQL) {
		must(t, s.PutHost(ctx, hostA))
		must(t, s.PutHost(ctx, hostB))
		must(t, s.AddVNIC(ctx, VNIC{VNetID: 42, MAC: mac1, Host: "a", IPs: []netip.Addr{ip1}}))
		drain(t, s, hostA.IP) // a learnt of its own VNIC
		must(t, s.AddVNIC(ctx, VNIC{VNetID: 42, MAC: mac2, Host: "b"}))
		drain(t, s, hostA.IP)
		drain(t, s, hostB.IP)

		must(t, s.MoveVNIC(ctx, 42, mac1, "b"))
		for _, h := range []Host{hostA, hostB} {
			es := drain(t, s, h.IP)
			if len(es) != 1 || es[0].Type != LogVL2 || es[0].MAC != mac1 || es[0].VNetID != 42 {
				t.Errorf("after the move, %s got %+v, want one VL2 entry for mac1", h.ID, es)
			}
		}
		h, _, _ := s.VL2(ctx, 42, mac1)
		if h.ID != "b" {
			t.Errorf("VL2 after the move: %+v", h)
		}

		// Host a holds no VNIC on vnetid 42 any more: nothing to tell it.
		must(t, s.RemoveVNIC(ctx, 42, mac1))
		if es := drain(t, s, hostA.IP); len(es) != 0 {
			t.Errorf("a got %+v", es)
		}
		es := drain(t, s, hostB.IP)
		if len(es) != 2 || es[0].Type != LogVL2 || es[1].Type != LogVL3 || es[1].IP != ip1 {
			t.Errorf("after the removal: %+v, want VL2 mac1 and VL3 10.0.0.1", es)
		}
		if _, _, ok, _ := s.VL3(ctx, 42, ip1); ok {
			t.Error("the removed VNIC's address still resolves")
		}

		// A host's address change invalidates its VNICs everywhere.
		hostB2 := hostB
		hostB2.IP = netip.MustParseAddr("198.18.0.22")
		must(t, s.PutHost(ctx, hostB2))
		if es := drain(t, s, hostA.IP); len(es) != 0 {
			t.Errorf("a has no VNIC on vnetid 42 any more but got %+v", es)
		}
		if es := drain(t, s, hostB2.IP); len(es) != 1 || es[0].MAC != mac2 {
			t.Errorf("b's own log after its address change: %+v", es)
		}
	})
}

// TestLogByteCap: a log request returns whole entries within the byte
// count, oldest first.
func TestLogByteCap(t *testing.T) {
	eachStore(t, func(t *testing.T, s *SQL) {
		must(t, s.PutHost(ctx, hostA))
		must(t, s.AddVNIC(ctx, VNIC{VNetID: 1, MAC: mac1, Host: "a", IPs: []netip.Addr{ip1}}))
		// VL2 (32 bytes) then VL3 (44 bytes).
		if es, _ := s.Log(ctx, hostA.IP, 40); len(es) != 1 || es[0].Type != LogVL2 {
			t.Errorf("40 bytes: %+v", es)
		}
		if es, _ := s.Log(ctx, hostA.IP, 76); len(es) != 2 {
			t.Errorf("76 bytes: %+v", es)
		}
		if es, _ := s.Log(ctx, hostA.IP, 10); len(es) != 0 {
			t.Errorf("10 bytes: %+v", es)
		}
		must(t, s.RemoveLog(ctx, [][16]byte{{1, 2, 3}})) // unknown ids are fine
	})
}

// drain reads and removes a host's whole log.
func drain(t *testing.T, s *SQL, ip netip.Addr) []LogEntry {
	t.Helper()
	es, err := s.Log(ctx, ip, 1<<20)
	must(t, err)
	var ids [][16]byte
	for _, e := range es {
		ids = append(ids, e.ID)
	}
	must(t, s.RemoveLog(ctx, ids))
	if rest, _ := s.Log(ctx, ip, 1<<20); len(rest) != 0 {
		t.Fatalf("log not empty after RemoveLog: %+v", rest)
	}
	return es
}
