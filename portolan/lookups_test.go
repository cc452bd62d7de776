package portolan

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"overlaynet/ether"
	"overlaynet/portolan/store"
	"overlaynet/svpwire"
)

type vl2Key struct {
	vnetid uint32
	mac    ether.MAC
}

type vl3Key struct {
	vnetid uint32
	ip     netip.Addr
}

type vl3Val struct {
	mac  ether.MAC
	host store.Host
}

// mapLookups is a Lookups from maps filled before it is used; only its
// log signals change afterwards.
type mapLookups struct {
	vl2     map[vl2Key]store.Host
	vl3     map[vl3Key]vl3Val
	sources map[netip.Addr][]store.Host

	mu      sync.Mutex
	signals map[netip.Addr]chan struct{}
	taken   chan netip.Addr // LogSignal sends the IP here, when not full
}

func newMapLookups() *mapLookups {
	return &mapLookups{vl2: map[vl2Key]store.Host{}, vl3: map[vl3Key]vl3Val{},
		sources: map[netip.Addr][]store.Host{}, signals: map[netip.Addr]chan struct{}{},
		taken: make(chan netip.Addr, 16)}
}

// add maps mac, and each of ips to it, on vnetid to h.
func (l *mapLookups) add(vnetid uint32, mac ether.MAC, h store.Host, ips ...netip.Addr) {
	l.vl2[vl2Key{vnetid, mac}] = h
	for _, ip := range ips {
		l.vl3[vl3Key{vnetid, ip}] = vl3Val{mac, h}
	}
}

func (l *mapLookups) VL2(vnetid uint32, mac ether.MAC) (store.Host, bool) {
	h, ok := l.vl2[vl2Key{vnetid, mac}]
	return h, ok
}

func (l *mapLookups) VL3(vnetid uint32, ip netip.Addr) (ether.MAC, store.Host, bool) {
	v, ok := l.vl3[vl3Key{vnetid, ip}]
	return v.mac, v.host, ok
}

func (l *mapLookups) HostsFrom(src netip.Addr) []store.Host { return l.sources[src] }

func (l *mapLookups) LogSignal(ip netip.Addr) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	ch, ok := l.signals[ip]
	if !ok {
		ch = make(chan struct{})
		l.signals[ip] = ch
	}
	select {
	case l.taken <- ip:
	default:
	}
	return ch
}

// notify closes the signal of ip's log, as the index does when entries
// are appended to it.
func (l *mapLookups) notify(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ch, ok := l.signals[ip]; ok {
		close(ch)
		delete(l.signals, ip)
	}
}

// waitTaken waits until a LogSignal for ip is taken: the LOG_REQ asking
// for its log is then at least about to be held.
func (l *mapLookups) waitTaken(t *testing.T, ip netip.Addr) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case got := <-l.taken:
			if got == ip {
				return
			}
		case <-timeout:
			t.Fatalf("no LogSignal for %s taken within 5s", ip)
		}
	}
}

// countingStore fails, and counts, the calls Lookups replace.
type countingStore struct {
	store.Store // nil when nothing else may be called
	calls       *atomic.Int64
}

var errNoStore = errors.New("the store must not be asked")

func (s countingStore) VL2(context.Context, uint32, ether.MAC) (store.Host, bool, error) {
	s.calls.Add(1)
	return store.Host{}, false, errNoStore
}

func (s countingStore) VL3(context.Context, uint32, netip.Addr) (ether.MAC, store.Host, bool, error) {
	s.calls.Add(1)
	return ether.MAC{}, store.Host{}, false, errNoStore
}

func (s countingStore) HostsFrom(context.Context, netip.Addr) ([]store.Host, error) {
	s.calls.Add(1)
	return nil, errNoStore
}

func withLookups(l Lookups, hold time.Duration) func(*Server) {
	return func(s *Server) { s.Lookups, s.LogHold = l, hold }
}

// TestLookupsAnswer: with Lookups set, VL2 and VL3 lookups and PING are
// answered from it, and the store is never asked.
func TestLookupsAnswer(t *testing.T) {
	t.Parallel()
	l := newMapLookups()
	l.add(42, mac1, hostA, ip1, ip6)
	l.add(42, mac2, hostC)
	var calls atomic.Int64
	s := startServer(t, countingStore{calls: &calls}, withLookups(l, time.Minute))
	c := dial(t, s.addr)
	for range 2 { // and again, on buffers reused
		if a := c.vl2(42, mac1); a != (svpwire.VL2Ack{Port: 4789, Addr: hostA.IP}) {
			t.Errorf("VL2 mac1: %+v", a)
		}
		if a := c.vl2(42, mac2); a != (svpwire.VL2Ack{Port: 4790, Addr: hostC.IP}) {
			t.Errorf("VL2 mac2: %+v", a)
		}
		if a := c.vl2(43, mac1); a != (svpwire.VL2Ack{Status: svpwire.StatusNotFound, Addr: unset}) {
			t.Errorf("VL2 on another vnet: %+v", a)
		}
		found := svpwire.VL3Ack{MAC: mac1, Port: 4789, Addr: hostA.IP}
		if a := c.vl3(42, ip1, svpwire.L3IPv4); a != found {
			t.Errorf("VL3 %s: %+v", ip1, a)
		}
		if a := c.vl3(42, ip6, svpwire.L3IPv6); a != found {
			t.Errorf("VL3 %s: %+v", ip6, a)
		}
		if a := c.vl3(42, netip.MustParseAddr("10.0.0.9"), svpwire.L3IPv4); a != (svpwire.VL3Ack{Status: svpwire.StatusNotFound, Addr: unset}) {
			t.Errorf("VL3 unknown: %+v", a)
		}
		if a := c.vl3(42, ip1, 3); a.Status != svpwire.StatusBadL3Type {
			t.Errorf("VL3 type 3: %+v", a)
		}
		c.ping(5)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("the store was asked %d times", n)
	}
	if n := s.Requests(); n != 16 {
		t.Errorf("Requests() = %d, want 16", n)
	}
}

// writeCounter counts the writes to the connections a listener accepts.
type writeCounter struct {
	net.Listener
	writes atomic.Int64
}

func (l *writeCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countedConn{c, &l.writes}, nil
}

type countedConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countedConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// TestLookupsBatched: the answers to requests pipelined in one write
// leave in a few writes, not one each.
func TestLookupsBatched(t *testing.T) {
	t.Parallel()
	l := newMapLookups()
	l.add(42, mac1, hostA, ip1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	wc := &writeCounter{Listener: ln}
	srv := &Server{Lookups: l, Log: testLogger(t)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, wc) }()
	t.Cleanup(func() { cancel(); <-done })

	c := dial(t, ln.Addr().String())
	const n = 120 // 120 x 28 to 40 bytes: a few KiB, one segment on loopback
	var burst []byte
	for i := range uint32(n) {
		switch i % 3 {
		case 0:
			burst = svpwire.VL2Req{MAC: mac1, VNetID: 42}.AppendFrame(burst, i)
		case 1:
			burst = svpwire.VL3Req{IP: ip1, Type: svpwire.L3IPv4, VNetID: 42}.AppendFrame(burst, i)
		case 2:
			burst = svpwire.AppendFrame(burst, svpwire.OpPing, i, nil)
		}
	}
	c.send(burst)
	seen := map[uint32]bool{}
	for range n {
		f := c.next()
		if seen[f.ID] || f.ID >= n {
			t.Fatalf("reply %v id %d: unknown or repeated", f.Op, f.ID)
		}
		seen[f.ID] = true
	}
	if w := wc.writes.Load(); w > 4 {
		t.Errorf("%d requests in one write answered in %d writes, want at most 4", n, w)
	} else {
		t.Logf("%d requests answered in %d writes", n, w)
	}
}

// heldServer serves a SQLite store with host a (registered from
// loopback) and Lookups l, holding LOG_REQs for hold.
func heldServer(t *testing.T, hold time.Duration) (*server, *store.SQL, *mapLookups) {
	t.Helper()
	st := openStore(t, newDSN(t, "sqlite"))
	must(t, st.SetHost(context.Background(), hostA, []netip.Addr{loopback}))
	l := newMapLookups()
	l.sources[loopback] = []store.Host{hostA}
	return startServer(t, st, withLookups(l, hold)), st, l
}

// TestHeldLogReq: a LOG_REQ that finds the log empty is held; meanwhile
// the connection's lookups, PINGs and LOG_RMs are answered; when entries
// arrive and the signal fires, it is answered with them at once.
func TestHeldLogReq(t *testing.T) {
	t.Parallel()
	s, st, l := heldServer(t, time.Minute)
	l.add(42, mac1, hostA)
	c := dial(t, s.addr)
	c.send(svpwire.LogReq{Count: 1024, IP: hostA.IP}.AppendFrame(nil, 100))
	l.waitTaken(t, hostA.IP)

	// Answered while the LOG_REQ is held: lookups on the reader, and a
	// LOG_RM on the worker.
	if a := c.vl2(42, mac1); a != (svpwire.VL2Ack{Port: 4789, Addr: hostA.IP}) {
		t.Errorf("VL2 while a LOG_REQ is held: %+v", a)
	}
	c.ping(3)
	if st := c.logRm(); st != svpwire.StatusOK {
		t.Errorf("LOG_RM while a LOG_REQ is held: %v", st)
	}

	must(t, st.AddVNIC(context.Background(), store.VNIC{VNetID: 42, MAC: mac1, Host: "a", IPs: []netip.Addr{ip1}}))
	start := time.Now()
	l.notify(hostA.IP)
	f := c.next()
	took := time.Since(start)
	a, err := svpwire.DecodeLogAck(f.Body)
	if f.Op != svpwire.OpLogAck || f.ID != 100 || err != nil || a.Status != svpwire.StatusOK || len(a.Entries) != 2 {
		t.Fatalf("held LOG_REQ: %v id %d %+v %v; want its 2 entries", f.Op, f.ID, a, err)
	}
	if took > time.Second {
		t.Errorf("held LOG_REQ answered %v after the signal", took)
	}
	t.Logf("held LOG_REQ answered %v after the signal", took)

	// A LOG_REQ that finds entries is answered at once.
	if a, _ := c.log(hostA.IP, 1024); a.Status != svpwire.StatusOK || len(a.Entries) != 2 {
		t.Errorf("LOG_REQ with entries waiting: %+v", a)
	}
}

// TestHeldLogReqExpires: a held LOG_REQ is answered, empty, once LogHold
// has passed.
func TestHeldLogReqExpires(t *testing.T) {
	t.Parallel()
	const hold = 100 * time.Millisecond
	s, _, l := heldServer(t, hold)
	c := dial(t, s.addr)
	start := time.Now()
	c.send(svpwire.LogReq{Count: 1024, IP: hostA.IP}.AppendFrame(nil, 100))
	l.waitTaken(t, hostA.IP)
	f := c.next()
	took := time.Since(start)
	a, err := svpwire.DecodeLogAck(f.Body)
	if f.Op != svpwire.OpLogAck || err != nil || a.Status != svpwire.StatusOK || len(a.Entries) != 0 {
		t.Fatalf("held LOG_REQ: %v %+v %v; want OK and empty", f.Op, a, err)
	}
	if took < hold || took > hold+2*time.Second {
		t.Errorf("held LOG_REQ answered after %v, want about %v", took, hold)
	}
}

// TestHeldLogReqNoHold: LogHold 0 answers an empty log at once, as Triton
// does; so does any LogHold a LOG_REQ with no room for every kind of
// entry.
func TestHeldLogReqNoHold(t *testing.T) {
	t.Parallel()
	s, _, _ := heldServer(t, 0)
	c := dial(t, s.addr)
	if a, n := c.log(hostA.IP, 1024); a.Status != svpwire.StatusOK || n != 4 {
		t.Errorf("LOG_REQ: %+v, %d bytes", a, n)
	}
	s, _, _ = heldServer(t, time.Minute)
	c = dial(t, s.addr)
	for _, count := range []uint32{0, svpwire.LogVL2Size, svpwire.LogVL3Size - 1} {
		if a, n := c.log(hostA.IP, count); a.Status != svpwire.StatusOK || n != 4 {
			t.Errorf("LOG_REQ count %d: %+v, %d bytes", count, a, n)
		}
	}
}

// TestHeldLogReqClose: a client that closes its connection while only a
// held LOG_REQ is outstanding ends the connection at once and is not
// counted as closing with requests in flight; one that shuts down its
// writing half gets the held LOG_REQ answered at once; and a server
// that stops does not wait for held LOG_REQs.
func TestHeldLogReqClose(t *testing.T) {
	t.Parallel()
	s, _, l := heldServer(t, time.Minute)
	held := func() *client {
		c := dial(t, s.addr)
		c.send(svpwire.LogReq{Count: 1024, IP: hostA.IP}.AppendFrame(nil, 100))
		l.waitTaken(t, hostA.IP)
		return c
	}

	held().c.Close()
	waitFor(t, func() bool { return s.Connections() == 0 })
	if n := s.ClosedInFlight(); n != 0 {
		t.Errorf("closed in flight %d after a close with only a held LOG_REQ, want 0", n)
	}

	c := held()
	must(t, c.c.(*net.TCPConn).CloseWrite())
	f := c.next()
	if a, err := svpwire.DecodeLogAck(f.Body); f.Op != svpwire.OpLogAck || err != nil || a.Status != svpwire.StatusOK {
		t.Errorf("held LOG_REQ after a half close: %v %+v %v", f.Op, a, err)
	}
	c.expectClosed()

	held()
	start := time.Now()
	s.cancel()
	select {
	case err := <-s.done:
		s.done <- err // for the cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return with a LOG_REQ held")
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Serve returned %v after its context ended, with a LOG_REQ held", took)
	}
}

// TestLookupsOwnership: with Lookups set, which hosts a source may act
// for comes from it, not from the store: the store here registers no
// source for far, Lookups says loopback acts for it.
func TestLookupsOwnership(t *testing.T) {
	t.Parallel()
	sql := openStore(t, newDSN(t, "sqlite"))
	ctx := context.Background()
	must(t, sql.PutHost(ctx, far))
	must(t, sql.PutHost(ctx, hostB))
	must(t, sql.AddVNIC(ctx, store.VNIC{VNetID: 42, MAC: mac1, Host: far.ID}))
	must(t, sql.AddVNIC(ctx, store.VNIC{VNetID: 42, MAC: mac2, Host: hostB.ID}))
	l := newMapLookups()
	l.sources[loopback] = []store.Host{far}
	var calls atomic.Int64
	s := startServer(t, countingStore{Store: sql, calls: &calls}, withLookups(l, 0))
	c := dial(t, s.addr)

	a, _ := c.log(far.IP, 1024)
	if a.Status != svpwire.StatusOK || len(a.Entries) == 0 {
		t.Fatalf("far's log from a source Lookups allows: %+v", a)
	}
	if st := c.logRm(a.Entries[0].ID); st != svpwire.StatusOK {
		t.Errorf("LOG_RM of far's entry: %v", st)
	}
	if a, _ := c.log(hostB.IP, 1024); a.Status != svpwire.StatusFatal {
		t.Errorf("b's log from a source Lookups does not allow: %+v", a)
	}
	if ids := logIDs(t, sql, hostB); len(ids) != 1 {
		t.Fatalf("b's log holds %d entries, want 1", len(ids))
	} else if st := c.logRm(ids[0]); st != svpwire.StatusFatal {
		t.Errorf("LOG_RM of b's entry: %v, want FATAL", st)
	}
	if n := s.Refused(); n != 2 {
		t.Errorf("Refused() = %d, want 2", n)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("the store was asked %d times for lookups or sources", n)
	}
}

// blockingOwners holds every LogOwners until release is closed, counting
// those that started.
type blockingOwners struct {
	store.Store
	release chan struct{}
	started *atomic.Int64
}

func (s blockingOwners) LogOwners(ctx context.Context, ids [][16]byte) ([]string, error) {
	s.started.Add(1)
	select {
	case <-s.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.Store.LogOwners(ctx, ids)
}

// TestWorkerBackpressure: while the worker is stuck on a store call and
// its queue is full, the reader stops reading, but what it answered
// before goes out; once the store answers, everything is answered.
func TestWorkerBackpressure(t *testing.T) {
	t.Parallel()
	st := openStore(t, newDSN(t, "sqlite"))
	l := newMapLookups()
	l.add(42, mac1, hostA)
	release := make(chan struct{})
	var started atomic.Int64
	s := startServer(t, blockingOwners{st, release, &started}, withLookups(l, time.Minute))
	c := dial(t, s.addr)
	const n = workQueue + 10 // more than the worker's queue holds
	burst := svpwire.VL2Req{MAC: mac1, VNetID: 42}.AppendFrame(nil, 1000)
	for i := range uint32(n) {
		// Of an id never given: the worker asks the store who owns it.
		burst = svpwire.LogRm{IDs: [][16]byte{{9}}}.AppendFrame(burst, i)
	}
	burst = svpwire.AppendFrame(burst, svpwire.OpPing, 1001, nil) // read only once the queue has room
	c.send(burst)
	if f := c.next(); f.ID != 1000 || f.Op != svpwire.OpVL2Ack {
		t.Fatalf("first reply %v id %d, want the VL2_ACK", f.Op, f.ID)
	}
	waitFor(t, func() bool { return started.Load() == 1 })
	close(release)
	seen := map[uint32]bool{}
	for range n + 1 {
		f := c.next()
		if seen[f.ID] || (f.Op != svpwire.OpLogRmAck || f.ID >= n) && (f.Op != svpwire.OpPong || f.ID != 1001) {
			t.Fatalf("reply %v id %d", f.Op, f.ID)
		}
		seen[f.ID] = true
	}
}
