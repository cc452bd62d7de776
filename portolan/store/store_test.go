package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"overlaynet/ether"
	"overlaynet/pgtemp"
)

var pg *pgtemp.Server

// noPG says why the PostgreSQL tests skip: no server binaries here.
var noPG error

func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		os.Exit(childWrite(path)) // a child of TestWatchSQLiteFile
	}
	if noPG = pgtemp.Available(); noPG == nil {
		var err error
		if pg, err = pgtemp.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "store tests need PostgreSQL:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	if pg != nil {
		pg.Stop()
	}
	os.Exit(code)
}

// needPG skips a PostgreSQL test where there is no PostgreSQL.
func needPG(t testing.TB) {
	t.Helper()
	if pg == nil {
		t.Skipf("PostgreSQL unavailable: %v", noPG)
	}
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
		needPG(t)
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

func must(t testing.TB, err error) {
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

// TestSources: SetHost replaces a host's source addresses (IPv4-mapped
// ones stored as IPv4), PutHost keeps them, HostsFrom finds a host by its
// underlay IP or a source, and removing the host removes them.
func TestSources(t *testing.T) {
	eachStore(t, func(t *testing.T, s *SQL) {
		admin := netip.MustParseAddr("10.99.0.1")
		must(t, s.SetHost(ctx, hostA, []netip.Addr{netip.MustParseAddr("::ffff:10.99.0.1"), netip.MustParseAddr("fd00:99::1")}))
		must(t, s.SetHost(ctx, hostB, []netip.Addr{admin}))
		src, err := s.Sources(ctx)
		must(t, err)
		if fmt.Sprint(src) != "map[a:[10.99.0.1 fd00:99::1] b:[10.99.0.1]]" {
			t.Errorf("Sources: %v", src)
		}
		from := func(a string) string {
			t.Helper()
			hs, err := s.HostsFrom(ctx, netip.MustParseAddr(a))
			must(t, err)
			return fmt.Sprint(hs)
		}
		if got, want := from("::ffff:10.99.0.1"), fmt.Sprint([]Host{hostA, hostB}); got != want {
			t.Errorf("HostsFrom 10.99.0.1: %s, want %s", got, want)
		}
		if got, want := from("198.18.0.1"), fmt.Sprint([]Host{hostA}); got != want {
			t.Errorf("HostsFrom a's underlay IP: %s, want %s", got, want)
		}
		if got := from("10.99.0.2"); got != "[]" {
			t.Errorf("HostsFrom an unknown address: %s", got)
		}
		// PutHost keeps the sources; SetHost with none clears them.
		moved := hostA
		moved.Port = 4790
		must(t, s.PutHost(ctx, moved))
		if got, want := from("fd00:99::1"), fmt.Sprint([]Host{moved}); got != want {
			t.Errorf("after PutHost: %s, want %s", got, want)
		}
		must(t, s.SetHost(ctx, moved, nil))
		if got := from("fd00:99::1"); got != "[]" {
			t.Errorf("after SetHost without sources: %s", got)
		}
		// A failed SetHost changes nothing.
		if err := s.SetHost(ctx, hostB, []netip.Addr{ip1, ip1}); !errors.Is(err, ErrExists) {
			t.Errorf("a source given twice: %v", err)
		}
		if err := s.SetHost(ctx, Host{ID: "x", IP: hostB.IP, Port: 1}, []netip.Addr{ip1}); !errors.Is(err, ErrExists) {
			t.Errorf("another host's underlay address: %v", err)
		}
		if src, _ := s.Sources(ctx); fmt.Sprint(src) != "map[b:[10.99.0.1]]" {
			t.Errorf("Sources after failed SetHosts: %v", src)
		}
		must(t, s.RemoveHost(ctx, "b"))
		if src, _ := s.Sources(ctx); len(src) != 0 {
			t.Errorf("Sources after removing b: %v", src)
		}
	})
}

// TestLogOwners: the hosts whose logs hold given ids, across more ids
// than one statement takes.
func TestLogOwners(t *testing.T) {
	eachStore(t, func(t *testing.T, s *SQL) {
		must(t, s.PutHost(ctx, hostA))
		must(t, s.PutHost(ctx, hostB))
		must(t, s.AddVNIC(ctx, VNIC{VNetID: 1, MAC: mac1, Host: "a"}))
		must(t, s.AddVNIC(ctx, VNIC{VNetID: 1, MAC: mac2, Host: "b"}))
		ea, _ := s.Log(ctx, hostA.IP, 1<<20)
		eb, _ := s.Log(ctx, hostB.IP, 1<<20)
		ids := make([][16]byte, 1200) // unknown ids, ignored
		for i := range ids {
			ids[i][0], ids[i][1] = byte(i), byte(i>>8)
		}
		owners := func(ids [][16]byte) string {
			o, err := s.LogOwners(ctx, ids)
			must(t, err)
			return fmt.Sprint(o)
		}
		if got := owners(ids); got != "[]" {
			t.Errorf("owners of unknown ids: %s", got)
		}
		if got := owners(append(ids, eb[0].ID)); got != "[b]" {
			t.Errorf("owners with b's id last: %s", got)
		}
		if got := owners(append([][16]byte{eb[0].ID, ea[0].ID}, ids...)); got != "[a b]" {
			t.Errorf("owners of a's and b's ids: %s", got)
		}
	})
}

// TestMigrateOldStore: a store made before source addresses existed (the
// schema as it was) opens, keeps its hosts and log, and takes sources.
func TestMigrateOldStore(t *testing.T) {
	old := []string{
		`CREATE TABLE hosts (id TEXT PRIMARY KEY, ip TEXT NOT NULL UNIQUE, port INTEGER NOT NULL)`,
		`CREATE TABLE vnics (vnetid BIGINT NOT NULL, mac BIGINT NOT NULL, vlan INTEGER NOT NULL,
			host TEXT NOT NULL REFERENCES hosts(id), PRIMARY KEY (vnetid, mac))`,
		`CREATE INDEX vnics_host ON vnics(host)`,
		`CREATE TABLE ips (vnetid BIGINT NOT NULL, ip TEXT NOT NULL, mac BIGINT NOT NULL, PRIMARY KEY (vnetid, ip),
			FOREIGN KEY (vnetid, mac) REFERENCES vnics(vnetid, mac) ON DELETE CASCADE)`,
		`CREATE TABLE log (%s, id TEXT NOT NULL UNIQUE, host TEXT NOT NULL, type INTEGER NOT NULL,
			vnetid BIGINT NOT NULL, mac BIGINT NOT NULL, ip TEXT NOT NULL, vlan INTEGER NOT NULL)`,
		`CREATE INDEX log_host ON log(host, seq)`,
		`INSERT INTO hosts (id, ip, port) VALUES ('a', '198.18.0.1', 4789)`,
		`INSERT INTO vnics (vnetid, mac, vlan, host) VALUES (1, 1, 0, 'a')`,
		`INSERT INTO log (id, host, type, vnetid, mac, ip, vlan) VALUES ('0102030405060708090a0b0c0d0e0f10', 'a', 1, 1, 1, '', 0)`,
	}
	check := func(t *testing.T, dsn string) {
		s, err := Open(ctx, dsn)
		must(t, err)
		defer s.Close()
		if hs, _ := s.Hosts(ctx); len(hs) != 1 || hs[0] != hostA {
			t.Errorf("hosts after the migration: %+v", hs)
		}
		if es, _ := s.Log(ctx, hostA.IP, 1024); len(es) != 1 || es[0].ID != [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16} {
			t.Errorf("log after the migration: %+v", es)
		}
		must(t, s.SetHost(ctx, hostA, []netip.Addr{ip1}))
		if hs, _ := s.HostsFrom(ctx, ip1); len(hs) != 1 || hs[0] != hostA {
			t.Errorf("HostsFrom after the migration: %+v", hs)
		}
		// The store gained the change feed, empty until that SetHost.
		if cs, err := s.Changes(ctx, 0, 10); err != nil || len(cs) != 1 || cs[0].Kind != ChangeHost || cs[0].Host != "a" {
			t.Errorf("changes after the migration: %+v %v", cs, err)
		}
	}
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "portolan.db")
		db, err := sql.Open("sqlite", "file:"+path)
		must(t, err)
		for _, q := range old {
			_, err := db.Exec(strings.Replace(q, "%s", sqlite.autoinc, 1))
			must(t, err)
		}
		db.Close()
		check(t, "sqlite:"+path)
	})
	t.Run("postgres", func(t *testing.T) {
		needPG(t)
		dbSeq++
		name := fmt.Sprintf("old%d_%d", os.Getpid(), dbSeq)
		admin, err := sql.Open("pgx", pg.DSN)
		must(t, err)
		_, err = admin.Exec("CREATE DATABASE " + name)
		admin.Close()
		must(t, err)
		db, err := sql.Open("pgx", replaceDB(pg.DSN, name))
		must(t, err)
		for _, q := range old {
			_, err := db.Exec(strings.Replace(q, "%s", postgres.autoinc, 1))
			must(t, err)
		}
		db.Close()
		check(t, replaceDB(pg.DSN, name))
	})
}
