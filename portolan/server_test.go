package portolan

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"overlaynet/ether"
	"overlaynet/pgtemp"
	"overlaynet/portolan/store"
	"overlaynet/svpwire"
)

var (
	pg      *pgtemp.Server
	pgAdmin *sql.DB    // connected to the "postgres" database, for CREATE DATABASE
	pgMu    sync.Mutex // serialises CREATE DATABASE
	dbSeq   atomic.Int64
)

func TestMain(m *testing.M) {
	var err error
	if pg, err = pgtemp.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "portolan tests need PostgreSQL:", err)
		os.Exit(1)
	}
	// The pgx driver is registered by the store package.
	if pgAdmin, err = sql.Open("pgx", pg.DSN); err != nil {
		pg.Stop()
		fmt.Fprintln(os.Stderr, "portolan tests: opening PostgreSQL:", err)
		os.Exit(1)
	}
	code := m.Run()
	pgAdmin.Close()
	pg.Stop()
	os.Exit(code)
}

var (
	mac1  = ether.MAC{2, 8, 0x20, 0, 0, 1}
	mac2  = ether.MAC{2, 8, 0x20, 0, 0, 2}
	ip1   = netip.MustParseAddr("10.0.0.1")
	ip6   = netip.MustParseAddr("fd00::1")
	hostA = store.Host{ID: "a", IP: netip.MustParseAddr("198.18.0.1"), Port: 4789}
	hostB = store.Host{ID: "b", IP: netip.MustParseAddr("198.18.0.2"), Port: 4789}
	hostC = store.Host{ID: "c", IP: netip.MustParseAddr("fd00:100::3"), Port: 4790}
	unset = netip.IPv6Unspecified() // "::", what not-found replies carry
	// loopback is where test clients connect from.
	loopback = netip.MustParseAddr("127.0.0.1")
)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// newDSN returns the DSN of a fresh, empty store of the given kind.
func newDSN(t testing.TB, kind string) string {
	t.Helper()
	if kind == "sqlite" {
		return "sqlite:" + filepath.Join(t.TempDir(), "portolan.db")
	}
	name := fmt.Sprintf("srv%d_%d", os.Getpid(), dbSeq.Add(1))
	pgMu.Lock()
	_, err := pgAdmin.Exec("CREATE DATABASE " + name)
	pgMu.Unlock()
	must(t, err)
	if !strings.Contains(pg.DSN, "@/postgres?") {
		t.Fatalf("unexpected DSN form %q", pg.DSN)
	}
	return strings.Replace(pg.DSN, "@/postgres?", "@/"+name+"?", 1)
}

// openStore opens a store handle, closed when the test ends.
func openStore(t testing.TB, dsn string) *store.SQL {
	t.Helper()
	st, err := store.Open(context.Background(), dsn)
	must(t, err)
	t.Cleanup(func() { st.Close() })
	return st
}

// eachStore runs fn, in parallel, against a fresh SQLite store and a
// fresh PostgreSQL database.
func eachStore(t *testing.T, fn func(t *testing.T, st *store.SQL, dsn string)) {
	t.Parallel()
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			dsn := newDSN(t, kind)
			fn(t, openStore(t, dsn), dsn)
		})
	}
}

// testLogger logs through t, so that a failing test shows what the
// server said.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// server is a Server running on a loopback listener.
type server struct {
	*Server
	addr   string
	cancel context.CancelFunc
	done   chan error // Serve's result
}

// startServer serves st on 127.0.0.1, with opts applied to the Server;
// the server stops when the test ends, and must stop promptly.
func startServer(t testing.TB, st store.Store, opts ...func(*Server)) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{Server: &Server{Store: st, Log: testLogger(t)}, addr: ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	for _, o := range opts {
		o(s.Server)
	}
	go func() { s.done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-s.done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after its context ended")
		}
	})
	return s
}

// client is a minimal SVP client.
type client struct {
	t testing.TB
	c net.Conn
	r *svpwire.Reader
}

func dial(t testing.TB, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	must(t, err)
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, r: svpwire.NewReader(c, 0)}
}

func (c *client) send(b []byte) {
	c.t.Helper()
	c.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.c.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *client) next() svpwire.Frame {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	f, err := c.r.Next()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return f
}

// call sends a message and returns the reply, which must carry the same
// id and the op that answers the message's.
func (c *client) call(m svpwire.Message, id uint32) svpwire.Frame {
	c.t.Helper()
	c.send(m.AppendFrame(nil, id))
	f := c.next()
	want, _ := svpwire.ExpectedReply(m.Op())
	if f.ID != id || f.Op != want {
		c.t.Fatalf("reply to %v id %#x is %v id %#x", m.Op(), id, f.Op, f.ID)
	}
	return f
}

func (c *client) ping(id uint32) {
	c.t.Helper()
	c.send(svpwire.AppendFrame(nil, svpwire.OpPing, id, nil))
	if f := c.next(); f.Op != svpwire.OpPong || f.ID != id || len(f.Body) != 0 {
		c.t.Fatalf("reply to PING id %#x: %v id %#x body %d bytes", id, f.Op, f.ID, len(f.Body))
	}
}

func (c *client) vl2(vnetid uint32, mac ether.MAC) svpwire.VL2Ack {
	c.t.Helper()
	f := c.call(svpwire.VL2Req{MAC: mac, VNetID: vnetid}, 7)
	ack, err := svpwire.DecodeVL2Ack(f.Body)
	must(c.t, err)
	return ack
}

func (c *client) vl3(vnetid uint32, ip netip.Addr, typ uint32) svpwire.VL3Ack {
	c.t.Helper()
	f := c.call(svpwire.VL3Req{IP: ip, Type: typ, VNetID: vnetid}, 8)
	ack, err := svpwire.DecodeVL3Ack(f.Body)
	must(c.t, err)
	return ack
}

func (c *client) log(ip netip.Addr, count uint32) (svpwire.LogAck, int) {
	c.t.Helper()
	f := c.call(svpwire.LogReq{Count: count, IP: ip}, 9)
	ack, err := svpwire.DecodeLogAck(f.Body)
	must(c.t, err)
	return ack, len(f.Body)
}

func (c *client) logRm(ids ...[16]byte) svpwire.Status {
	c.t.Helper()
	f := c.call(svpwire.LogRm{IDs: ids}, 10)
	ack, err := svpwire.DecodeLogRmAck(f.Body)
	must(c.t, err)
	return ack.Status
}

// expectClosed checks that the server closes the connection within a
// second, sending nothing more.
func (c *client) expectClosed() {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(time.Second))
	var b [64]byte
	n, err := c.c.Read(b[:])
	switch {
	case n > 0:
		c.t.Errorf("server sent %d bytes (% x) instead of closing", n, b[:n])
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.t.Error("server did not close the connection within a second")
	case err != io.EOF && !errors.Is(err, syscall.ECONNRESET):
		c.t.Errorf("read: %v, want EOF or a reset", err)
	}
}

// TestPing: PONG carries the request's id bytes unchanged; the illumos
// client writes ids in host (little-endian) order.
func TestPing(t *testing.T) {
	t.Parallel()
	s := startServer(t, openStore(t, newDSN(t, "sqlite")))
	c := dial(t, s.addr)
	req := svpwire.AppendFrame(nil, svpwire.OpPing, 0x2a000000, nil)
	if !bytes.Equal(req[8:12], []byte{0x2a, 0, 0, 0}) {
		t.Fatalf("request id bytes % x", req[8:12])
	}
	c.send(req)
	reply := make([]byte, svpwire.HeaderLen)
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.ReadFull(c.c, reply)
	must(t, err)
	want := svpwire.AppendFrame(nil, svpwire.OpPong, 0x2a000000, nil)
	if !bytes.Equal(reply, want) {
		t.Errorf("PONG is % x, want % x", reply, want)
	}
	for _, id := range []uint32{0, 1, 0xffffffff, 0x01000000} {
		c.ping(id)
	}
}

func TestLookups(t *testing.T) {
	eachStore(t, func(t *testing.T, st *store.SQL, _ string) {
		ctx := context.Background()
		must(t, st.PutHost(ctx, hostA))
		must(t, st.PutHost(ctx, hostC))
		must(t, st.AddVNIC(ctx, store.VNIC{VNetID: 42, MAC: mac1, Host: "a", IPs: []netip.Addr{ip1, ip6}}))
		must(t, st.AddVNIC(ctx, store.VNIC{VNetID: 42, MAC: mac2, VLAN: 7, Host: "c"}))
		c := dial(t, startServer(t, st).addr)

		// VL2.
		if a := c.vl2(42, mac1); a != (svpwire.VL2Ack{Status: svpwire.StatusOK, Port: 4789, Addr: hostA.IP}) {
			t.Errorf("VL2 mac1: %+v", a)
		}
		if a := c.vl2(42, mac2); a != (svpwire.VL2Ack{Status: svpwire.StatusOK, Port: 4790, Addr: hostC.IP}) {
			t.Errorf("VL2 mac2: %+v", a)
		}
		// IPv4 underlay addresses go out IPv4-mapped.
		f := c.call(svpwire.VL2Req{MAC: mac1, VNetID: 42}, 1)
		if want := netip.MustParseAddr("::ffff:198.18.0.1").As16(); !bytes.Equal(f.Body[4:20], want[:]) {
			t.Errorf("VL2 address bytes % x, want % x", f.Body[4:20], want)
		}
		for _, q := range []struct {
			vnet uint32
			mac  ether.MAC
		}{{43, mac1}, {42, ether.MAC{2, 8, 0x20, 0, 0, 9}}} {
			if a := c.vl2(q.vnet, q.mac); a != (svpwire.VL2Ack{Status: svpwire.StatusNotFound, Addr: unset}) {
				t.Errorf("VL2 %d %v: %+v, want NOTFOUND, port 0, ::", q.vnet, q.mac, a)
			}
		}

		// VL3.
		found := svpwire.VL3Ack{Status: svpwire.StatusOK, MAC: mac1, Port: 4789, Addr: hostA.IP}
		for _, q := range []struct {
			ip  netip.Addr
			typ uint32
		}{{ip1, svpwire.L3IPv4}, {ip6, svpwire.L3IPv6}} {
			if a := c.vl3(42, q.ip, q.typ); a != found {
				t.Errorf("VL3 %s: %+v, want %+v", q.ip, a, found)
			}
		}
		for _, q := range []struct {
			vnet uint32
			ip   netip.Addr
			typ  uint32
		}{
			{42, netip.MustParseAddr("10.0.0.9"), svpwire.L3IPv4},
			{42, netip.MustParseAddr("fd00::9"), svpwire.L3IPv6},
			{43, ip1, svpwire.L3IPv4},
			{43, ip6, svpwire.L3IPv6},
		} {
			if a := c.vl3(q.vnet, q.ip, q.typ); a != (svpwire.VL3Ack{Status: svpwire.StatusNotFound, Addr: unset}) {
				t.Errorf("VL3 %d %s: %+v, want NOTFOUND, zero MAC, port 0, ::", q.vnet, q.ip, a)
			}
		}
		for _, typ := range []uint32{0, 3, 7} {
			if a := c.vl3(42, ip1, typ); a.Status != svpwire.StatusBadL3Type {
				t.Errorf("VL3 type %d: %+v, want BADL3TYPE", typ, a)
			}
		}

		// BULK: defined, implemented by nobody.
		for typ, want := range map[uint32]svpwire.Status{svpwire.BulkVL2: svpwire.StatusFatal, svpwire.BulkVL3: svpwire.StatusFatal, 0: svpwire.StatusBadBulk, 3: svpwire.StatusBadBulk} {
			f := c.call(svpwire.BulkReq{Type: typ}, 0x0b000000)
			a, err := svpwire.DecodeBulkAck(f.Body)
			must(t, err)
			if a.Status != want || a.Type != typ || len(a.Data) != 0 {
				t.Errorf("BULK type %d: %+v, want status %v", typ, a, want)
			}
		}
		c.ping(99) // still open after all that
	})
}

func TestLog(t *testing.T) {
	eachStore(t, func(t *testing.T, st *store.SQL, _ string) {
		ctx := context.Background()
		// The test's client connects from loopback for both hosts.
		must(t, st.SetHost(ctx, hostA, []netip.Addr{loopback}))
		must(t, st.SetHost(ctx, hostB, []netip.Addr{loopback}))
		c := dial(t, startServer(t, st).addr)

		if a, n := c.log(hostA.IP, 1024); a.Status != svpwire.StatusOK || n != 4 {
			t.Errorf("empty log: %+v, body %d bytes", a, n)
		}
		must(t, st.AddVNIC(ctx, store.VNIC{VNetID: 42, MAC: mac1, Host: "a", IPs: []netip.Addr{ip1}, VLAN: 5}))

		// 40 bytes hold the VL2 entry (32) but not the VL3 one (44) after it.
		a, n := c.log(hostA.IP, 40)
		if a.Status != svpwire.StatusOK || n != 4+svpwire.LogVL2Size || len(a.Entries) != 1 ||
			a.Entries[0].Type != svpwire.LogVL2 || a.Entries[0].MAC != mac1 || a.Entries[0].VNetID != 42 {
			t.Errorf("count 40: %+v, body %d bytes; want one VL2 entry for mac1", a, n)
		}
		if a, n := c.log(hostA.IP, 0); a.Status != svpwire.StatusOK || n != 4 {
			t.Errorf("count 0: %+v, body %d bytes", a, n)
		}
		a, n = c.log(hostA.IP, 1024)
		if n != 4+svpwire.LogVL2Size+svpwire.LogVL3Size || len(a.Entries) != 2 {
			t.Fatalf("count 1024: %+v, body %d bytes; want VL2 and VL3 entries", a, n)
		}
		if e := a.Entries[1]; e.Type != svpwire.LogVL3 || e.IP != ip1 || e.VLAN != 5 || e.VNetID != 42 {
			t.Errorf("VL3 entry %+v", e)
		}
		if a.Entries[0].ID == a.Entries[1].ID {
			t.Error("two entries share an id")
		}
		if s := c.logRm(a.Entries[0].ID, a.Entries[1].ID); s != svpwire.StatusOK {
			t.Errorf("LOG_RM: %v", s)
		}
		if a, n := c.log(hostA.IP, 1024); n != 4 || len(a.Entries) != 0 {
			t.Errorf("after LOG_RM: %+v", a)
		}
		if s := c.logRm(a.Entries[0].ID); s != svpwire.StatusOK { // again: at least once
			t.Errorf("LOG_RM of a removed id: %v", s)
		}
		if s := c.logRm(); s != svpwire.StatusOK {
			t.Errorf("empty LOG_RM: %v", s)
		}

		// Changes made through the store are in the log at once.
		must(t, st.AddVNIC(ctx, store.VNIC{VNetID: 42, MAC: mac2, Host: "b"}))
		drainLog(t, c, hostA.IP)
		drainLog(t, c, hostB.IP)
		must(t, st.MoveVNIC(ctx, 42, mac1, "b"))
		for _, h := range []store.Host{hostA, hostB} {
			es := drainLog(t, c, h.IP)
			if len(es) != 1 || es[0].Type != svpwire.LogVL2 || es[0].MAC != mac1 {
				t.Errorf("after the move, %s got %+v", h.ID, es)
			}
		}
		must(t, st.RemoveVNIC(ctx, 42, mac1))
		es := drainLog(t, c, hostB.IP)
		if len(es) != 2 || es[0].Type != svpwire.LogVL2 || es[0].MAC != mac1 || es[1].Type != svpwire.LogVL3 || es[1].IP != ip1 {
			t.Errorf("after the removal, b got %+v", es)
		}

		// A host the store does not know.
		for _, ip := range []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("fd00::99")} {
			f := c.call(svpwire.LogReq{Count: 1024, IP: ip}, 0x2a000000)
			if a, err := svpwire.DecodeLogAck(f.Body); err != nil || a.Status != svpwire.StatusFatal || len(f.Body) != 4 {
				t.Errorf("LOG_REQ from unknown %s: %+v %v", ip, a, err)
			}
		}
		c.ping(1)
	})
}

// drainLog fetches and removes a host's whole log over SVP.
func drainLog(t *testing.T, c *client, ip netip.Addr) []svpwire.LogEntry {
	t.Helper()
	a, _ := c.log(ip, 1<<16)
	if a.Status != svpwire.StatusOK {
		t.Fatalf("log of %s: %v", ip, a.Status)
	}
	var ids [][16]byte
	for _, e := range a.Entries {
		ids = append(ids, e.ID)
	}
	if s := c.logRm(ids...); s != svpwire.StatusOK {
		t.Fatalf("LOG_RM: %v", s)
	}
	return a.Entries
}

// TestPipelining: many requests in one write on one connection are all
// answered, each with its own id.
func TestPipelining(t *testing.T) {
	eachStore(t, func(t *testing.T, st *store.SQL, _ string) {
		ctx := context.Background()
		must(t, st.PutHost(ctx, hostA))
		must(t, st.AddVNIC(ctx, store.VNIC{VNetID: 42, MAC: mac1, Host: "a", IPs: []netip.Addr{ip1}}))
		c := dial(t, startServer(t, st).addr)

		const n = 200
		want := map[uint32][]byte{} // id -> the whole reply frame
		var burst []byte
		for i := range uint32(n) {
			id := i<<24 | i // distinct in either byte order
			var reply []byte
			switch i % 5 {
			case 0:
				burst = svpwire.AppendFrame(burst, svpwire.OpPing, id, nil)
				reply = svpwire.AppendFrame(nil, svpwire.OpPong, id, nil)
			case 1:
				burst = svpwire.VL2Req{MAC: mac1, VNetID: 42}.AppendFrame(burst, id)
				reply = svpwire.VL2Ack{Port: 4789, Addr: hostA.IP}.AppendFrame(nil, id)
			case 2:
				burst = svpwire.VL2Req{MAC: mac2, VNetID: 42}.AppendFrame(burst, id)
				reply = svpwire.VL2Ack{Status: svpwire.StatusNotFound}.AppendFrame(nil, id)
			case 3:
				burst = svpwire.VL3Req{IP: ip1, Type: svpwire.L3IPv4, VNetID: 42}.AppendFrame(burst, id)
				reply = svpwire.VL3Ack{MAC: mac1, Port: 4789, Addr: hostA.IP}.AppendFrame(nil, id)
			case 4:
				burst = svpwire.VL3Req{IP: ip6, Type: svpwire.L3IPv6, VNetID: 42}.AppendFrame(burst, id)
				reply = svpwire.VL3Ack{Status: svpwire.StatusNotFound}.AppendFrame(nil, id)
			}
			want[id] = reply
		}
		c.send(burst)
		for range n {
			f := c.next()
			w, ok := want[f.ID]
			if !ok {
				t.Fatalf("reply %v with unknown or repeated id %#x", f.Op, f.ID)
			}
			delete(want, f.ID)
			if got := svpwire.AppendFrame(nil, f.Op, f.ID, f.Body); !bytes.Equal(got, w) {
				t.Errorf("id %#x: reply % x, want % x", f.ID, got, w)
			}
		}
		c.ping(1) // nothing else was queued
	})
}

// slowStore answers VL2 lookups late, so that requests are still in
// flight when the client does something.
type slowStore struct {
	store.Store
	delay time.Duration
}

func (s slowStore) VL2(ctx context.Context, vnetid uint32, mac ether.MAC) (store.Host, bool, error) {
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return store.Host{}, false, ctx.Err()
	}
	return s.Store.VL2(ctx, vnetid, mac)
}

// TestHalfClose: a client that sends its requests and shuts down its
// writing side still gets every answer before the server closes.
func TestHalfClose(t *testing.T) {
	t.Parallel()
	st := openStore(t, newDSN(t, "sqlite"))
	must(t, st.PutHost(context.Background(), hostA))
	must(t, st.AddVNIC(context.Background(), store.VNIC{VNetID: 42, MAC: mac1, Host: "a"}))
	c := dial(t, startServer(t, slowStore{st, 100 * time.Millisecond}).addr)
	var burst []byte
	for id := range uint32(20) {
		burst = svpwire.VL2Req{MAC: mac1, VNetID: 42}.AppendFrame(burst, id)
	}
	c.send(burst)
	must(t, c.c.(*net.TCPConn).CloseWrite())
	seen := map[uint32]bool{}
	for range 20 {
		f := c.next()
		a, err := svpwire.DecodeVL2Ack(f.Body)
		if f.Op != svpwire.OpVL2Ack || seen[f.ID] || err != nil || a.Status != svpwire.StatusOK {
			t.Fatalf("%v id %#x: %+v %v", f.Op, f.ID, a, err)
		}
		seen[f.ID] = true
	}
	c.expectClosed()
}

// TestManyConnections: concurrent clients each get their own answers.
func TestManyConnections(t *testing.T) {
	eachStore(t, func(t *testing.T, st *store.SQL, _ string) {
		ctx := context.Background()
		const clients = 50
		lookups := 100
		if raceEnabled {
			lookups = 20 // as many races, in well under 2 s
		}
		must(t, st.PutHost(ctx, hostA))
		must(t, st.PutHost(ctx, hostC))
		for i := range clients {
			h := "a"
			if i%2 == 1 {
				h = "c"
			}
			must(t, st.AddVNIC(ctx, store.VNIC{VNetID: uint32(i), MAC: ether.MAC{2, 0, 0, 0, 0, byte(i)}, Host: h,
				IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})}}))
		}
		s := startServer(t, st)
		var wg sync.WaitGroup
		errs := make(chan error, clients)
		for i := range clients {
			wg.Go(func() {
				c, err := net.Dial("tcp", s.addr)
				if err != nil {
					errs <- err
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				r := svpwire.NewReader(c, 0)
				want := hostA
				if i%2 == 1 {
					want = hostC
				}
				mac := ether.MAC{2, 0, 0, 0, 0, byte(i)}
				// Lookups go in windows of 10 pipelined requests; odd
				// ones ask VL3, even ones VL2, and every fifth asks
				// another client's vnetid (not found).
				for base := 0; base < lookups; base += 10 {
					var out []byte
					for j := base; j < base+10; j++ {
						vnet := uint32(i)
						if j%5 == 4 {
							vnet = uint32(i + clients)
						}
						id := uint32(i<<16 | j)
						if j%2 == 0 {
							out = svpwire.VL2Req{MAC: mac, VNetID: vnet}.AppendFrame(out, id)
						} else {
							out = svpwire.VL3Req{IP: netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), Type: svpwire.L3IPv4, VNetID: vnet}.AppendFrame(out, id)
						}
					}
					if _, err := c.Write(out); err != nil {
						errs <- err
						return
					}
					for range 10 {
						f, err := r.Next()
						if err != nil {
							errs <- err
							return
						}
						j := int(f.ID & 0xffff)
						if f.ID>>16 != uint32(i) || j < base || j >= base+10 {
							errs <- fmt.Errorf("client %d: reply id %#x", i, f.ID)
							return
						}
						var got, expect any
						switch {
						case j%2 == 0 && j%5 == 4:
							got, _ = svpwire.DecodeVL2Ack(f.Body)
							expect = svpwire.VL2Ack{Status: svpwire.StatusNotFound, Addr: unset}
						case j%2 == 0:
							got, _ = svpwire.DecodeVL2Ack(f.Body)
							expect = svpwire.VL2Ack{Port: want.Port, Addr: want.IP}
						case j%5 == 4:
							got, _ = svpwire.DecodeVL3Ack(f.Body)
							expect = svpwire.VL3Ack{Status: svpwire.StatusNotFound, Addr: unset}
						default:
							got, _ = svpwire.DecodeVL3Ack(f.Body)
							expect = svpwire.VL3Ack{MAC: mac, Port: want.Port, Addr: want.IP}
						}
						if got != expect {
							errs <- fmt.Errorf("client %d lookup %d: %v %+v, want %+v", i, j, f.Op, got, expect)
							return
						}
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if n := s.Requests(); n != uint64(clients*lookups) {
			t.Errorf("Requests() = %d, want %d", n, clients*lookups)
		}
	})
}

// TestMalformed: a malformed frame, or one a client must not send, closes
// its connection and nothing else.
func TestMalformed(t *testing.T) {
	t.Parallel()
	s := startServer(t, openStore(t, newDSN(t, "sqlite")))
	keeper := dial(t, s.addr) // opened before, used after every case
	keeper.ping(1)

	ping := svpwire.AppendFrame(nil, svpwire.OpPing, 2, nil)
	badCRC := bytes.Clone(ping)
	badCRC[15] ^= 1
	v2 := bytes.Clone(ping)
	binary.BigEndian.PutUint16(v2[0:2], 2)
	binary.BigEndian.PutUint32(v2[12:16], svpwire.Checksum(v2, nil))
	huge := svpwire.Header{Version: 1, Op: svpwire.OpLogRm, Size: 1 << 20, ID: 3}.Append(nil)
	binary.BigEndian.PutUint32(huge[12:16], svpwire.Checksum(huge, nil)) // the CRC of no body
	vl2 := svpwire.VL2Req{MAC: mac1, VNetID: 1}.Append(nil)
	logRm := svpwire.LogRm{IDs: [][16]byte{{1}}}.Append(nil)

	cases := []struct {
		name  string
		frame []byte
	}{
		{"bad CRC", badCRC},
		{"version 2", v2},
		{"1 MiB body announced", huge},
		{"VL2_REQ body short", svpwire.AppendFrame(nil, svpwire.OpVL2Req, 4, vl2[:11])},
		{"VL2_REQ body long", svpwire.AppendFrame(nil, svpwire.OpVL2Req, 4, append(vl2, 0))},
		{"VL3_REQ body short", svpwire.AppendFrame(nil, svpwire.OpVL3Req, 4, make([]byte, 20))},
		{"LOG_REQ body long", svpwire.AppendFrame(nil, svpwire.OpLogReq, 4, make([]byte, 21))},
		{"LOG_RM count mismatch", svpwire.AppendFrame(nil, svpwire.OpLogRm, 4, logRm[:19])},
		{"BULK_REQ empty", svpwire.AppendFrame(nil, svpwire.OpBulkReq, 4, nil)},
		{"PING with a body", svpwire.AppendFrame(nil, svpwire.OpPing, 5, []byte{0})},
		{"op 99", svpwire.AppendFrame(nil, 99, 6, nil)},
		{"op 0", svpwire.AppendFrame(nil, 0, 6, nil)},
		{"op 0xffff", svpwire.AppendFrame(nil, 0xffff, 6, make([]byte, 12))},
		{"PONG", svpwire.AppendFrame(nil, svpwire.OpPong, 7, nil)},
		{"VL2_ACK", svpwire.VL2Ack{}.AppendFrame(nil, 7)},
		{"VL3_ACK", svpwire.VL3Ack{}.AppendFrame(nil, 7)},
		{"LOG_ACK", svpwire.LogAck{}.AppendFrame(nil, 7)},
		{"LOG_RM_ACK", svpwire.LogRmAck{}.AppendFrame(nil, 7)},
		{"BULK_ACK", svpwire.BulkAck{}.AppendFrame(nil, 7)},
		{"SHOOTDOWN", svpwire.Shootdown{MAC: mac1, VNetID: 1}.AppendFrame(nil, 8)},
		{"truncated header", ping[:10]},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, s.addr)
			c.send(tc.frame)
			if tc.name == "truncated header" {
				must(t, c.c.(*net.TCPConn).CloseWrite())
			}
			c.expectClosed()
			keeper.ping(10)
			dial(t, s.addr).ping(11)
		})
	}

	// Nothing after a bad frame is answered.
	c := dial(t, s.addr)
	c.send(append(append(bytes.Clone(badCRC), ping...), ping...))
	c.expectClosed()
	keeper.ping(12)
}

// TestSharedStore: two servers, each with its own handle on one store,
// answer a change made through either handle at once.
func TestSharedStore(t *testing.T) {
	eachStore(t, func(t *testing.T, stA *store.SQL, dsn string) {
		ctx := context.Background()
		stB := openStore(t, dsn)
		a := dial(t, startServer(t, stA).addr)
		b := dial(t, startServer(t, stB).addr)
		if ack := b.vl2(42, mac1); ack.Status != svpwire.StatusNotFound {
			t.Fatalf("before: %+v", ack)
		}

		must(t, stA.SetHost(ctx, hostA, []netip.Addr{loopback}))
		must(t, stA.PutHost(ctx, hostC))
		must(t, stA.AddVNIC(ctx, store.VNIC{VNetID: 42, MAC: mac1, Host: "a", IPs: []netip.Addr{ip1}}))
		if ack := b.vl2(42, mac1); ack != (svpwire.VL2Ack{Port: hostA.Port, Addr: hostA.IP}) {
			t.Errorf("server B after the add: %+v", ack)
		}
		if ack := b.vl3(42, ip1, svpwire.L3IPv4); ack != (svpwire.VL3Ack{MAC: mac1, Port: hostA.Port, Addr: hostA.IP}) {
			t.Errorf("server B VL3 after the add: %+v", ack)
		}
		if es := drainLog(t, b, hostA.IP); len(es) != 2 {
			t.Errorf("host a's log through server B: %+v", es)
		}

		must(t, stB.MoveVNIC(ctx, 42, mac1, "c"))
		for name, c := range map[string]*client{"A": a, "B": b} {
			if ack := c.vl2(42, mac1); ack != (svpwire.VL2Ack{Port: hostC.Port, Addr: hostC.IP}) {
				t.Errorf("server %s after the move: %+v", name, ack)
			}
		}
		must(t, stA.RemoveVNIC(ctx, 42, mac1))
		if ack := b.vl2(42, mac1); ack.Status != svpwire.StatusNotFound {
			t.Errorf("server B after the removal: %+v", ack)
		}
	})
}

// TestServeCancel: Serve returns when its context ends, closing the
// connections it holds and the listener.
func TestServeCancel(t *testing.T) {
	t.Parallel()
	st := openStore(t, newDSN(t, "sqlite"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := &Server{Store: st} // no logger: a nil Log discards
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()

	c1, c2 := dial(t, ln.Addr().String()), dial(t, ln.Addr().String())
	c1.ping(1)
	c2.send(svpwire.AppendFrame(nil, svpwire.OpPing, 2, nil)[:10]) // half a frame
	waitFor(t, func() bool { return srv.Connections() == 2 })

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve returned %v", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Serve did not return within a second of its context ending")
	}
	c1.expectClosed()
	c2.expectClosed()
	if n := srv.Connections(); n != 0 {
		t.Errorf("%d connections open after Serve returned", n)
	}
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Error("the listener still accepts connections")
	}
}

// flakyListener fails its first Accept calls with EMFILE, as when the
// process is out of file descriptors.
type flakyListener struct {
	net.Listener
	fails atomic.Int32
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestAcceptErrors: a temporary accept error does not stop the server; a
// closed listener does.
func TestAcceptErrors(t *testing.T) {
	t.Parallel()
	st := openStore(t, newDSN(t, "sqlite"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	fl := &flakyListener{Listener: ln}
	fl.fails.Store(3)
	srv := &Server{Store: st, Log: testLogger(t)}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), fl) }()
	dial(t, ln.Addr().String()).ping(1)

	ln.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve on a closed listener returned %v", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Serve did not return when its listener was closed")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 2s")
		}
	}
}
