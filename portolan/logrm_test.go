package portolan

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"overlaynet/portolan/store"
	"overlaynet/svpwire"
)

// gatedStore holds its RemoveLogs until released (or fails them while
// fail is set), and counts calls.
type gatedStore struct {
	store.Store
	calls   atomic.Int32
	entered chan struct{} // closed by the first call
	release chan struct{}
	fail    atomic.Bool
	reads   atomic.Int32
}

// Logs counts the log reads (a batch each) and passes them on.
func (g *gatedStore) Logs(ctx context.Context, reads []store.LogRead) error {
	g.reads.Add(1)
	return g.Store.(batchLogs).Logs(ctx, reads)
}

func newGatedStore(st store.Store) *gatedStore {
	return &gatedStore{Store: st, entered: make(chan struct{}), release: make(chan struct{})}
}

func (g *gatedStore) RemoveLog(ctx context.Context, ids [][16]byte) error {
	if g.calls.Add(1) == 1 {
		close(g.entered)
	}
	select {
	case <-g.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	if g.fail.Load() {
		return errors.New("disk on fire")
	}
	return g.Store.RemoveLog(ctx, ids)
}

// logHosts registers n hosts, all from loopback, each with a VNIC on
// vnetid 42, then empties their logs and moves one VNIC: every host's log
// then holds one entry.
func logHosts(t *testing.T, st *store.SQL, n int) []store.Host {
	t.Helper()
	ctx := context.Background()
	var hosts []store.Host
	for i := range n {
		h := store.Host{ID: fmt.Sprintf("h%d", i), IP: netip.AddrFrom4([4]byte{198, 18, 1, byte(i)}), Port: 4789}
		must(t, st.SetHost(ctx, h, []netip.Addr{loopback}))
		hosts = append(hosts, h)
	}
	for i, h := range hosts {
		must(t, st.AddVNIC(ctx, store.VNIC{VNetID: 42, MAC: [6]byte{2, 8, 0x20, 0, 1, byte(i)}, Host: h.ID}))
	}
	for _, h := range hosts {
		es, err := st.Log(ctx, h.IP, 1<<20)
		must(t, err)
		for _, e := range es {
			must(t, st.RemoveLog(ctx, [][16]byte{e.ID}))
		}
	}
	must(t, st.MoveVNIC(ctx, 42, [6]byte{2, 8, 0x20, 0, 1, 0}, hosts[min(1, n-1)].ID))
	return hosts
}

// storeLogLen is how many entries the store holds for h.
func storeLogLen(t *testing.T, st store.Store, h store.Host) int {
	t.Helper()
	es, err := st.Log(context.Background(), h.IP, 1<<20)
	must(t, err)
	return len(es)
}

// TestLogRmInBackground: a LOG_RM is answered OK at once, while the
// store's removal waits (here, held); meanwhile a LOG_REQ does not give
// the entry again; the LOG_RMs of many hosts are removed together, in a
// transaction or two, once the store lets them.
func TestLogRmInBackground(t *testing.T) {
	t.Parallel()
	for _, lookups := range []bool{false, true} {
		t.Run(fmt.Sprintf("lookups=%v", lookups), func(t *testing.T) {
			t.Parallel()
			st := openStore(t, newDSN(t, "sqlite"))
			const n = 20
			hosts := logHosts(t, st, n)
			g := newGatedStore(st)
			var opts []func(*Server)
			if lookups {
				l := newMapLookups()
				l.sources[loopback] = hosts
				opts = append(opts, withLookups(l, 0))
			}
			srv := startServer(t, g, opts...)
			for i, h := range hosts {
				c := dial(t, srv.addr)
				a, _ := c.log(h.IP, 1024)
				if a.Status != svpwire.StatusOK || len(a.Entries) != 1 {
					t.Fatalf("host %d's log: %+v", i, a)
				}
				if s := c.logRm(a.Entries[0].ID); s != svpwire.StatusOK {
					t.Errorf("LOG_RM %d: %v, want OK at once", i, s)
				}
				if a, _ := c.log(h.IP, 1024); a.Status != svpwire.StatusOK || len(a.Entries) != 0 {
					t.Errorf("host %d's log after its LOG_RM, the store's removal pending: %+v, want empty", i, a)
				}
			}
			<-g.entered
			if left := storeLogLen(t, st, hosts[n-1]); left != 1 {
				t.Errorf("the store lost the entry before its removal ran: %d left", left)
			}
			if p := srv.RemovalsPending(); p != n {
				t.Errorf("%d removals pending, want %d", p, n)
			}
			close(g.release)
			waitFor(t, func() bool { return srv.RemovalsPending() == 0 })
			for i, h := range hosts {
				if left := storeLogLen(t, st, h); left != 0 {
					t.Errorf("host %d: %d entries left in the store", i, left)
				}
			}
			if got := g.calls.Load(); got > 2 {
				t.Errorf("%d transactions for %d LOG_RMs, want 2 at most (the first, then the rest together)", got, n)
			}
		})
	}
}

// removedWhileFailing serves a store whose removals fail (and back off)
// until g.fail is cleared; host 0 has read its one log entry and removed
// it with a LOG_RM, answered OK.
func removedWhileFailing(t *testing.T) (st *store.SQL, hosts []store.Host, g *gatedStore, srv *server, c *client) {
	t.Helper()
	st = openStore(t, newDSN(t, "sqlite"))
	hosts = logHosts(t, st, 2)
	g = newGatedStore(st)
	g.fail.Store(true)
	close(g.release)
	srv = startServer(t, g)
	c = dial(t, srv.addr)
	a, _ := c.log(hosts[0].IP, 1024)
	if len(a.Entries) != 1 {
		t.Fatalf("host's log: %+v", a)
	}
	if s := c.logRm(a.Entries[0].ID); s != svpwire.StatusOK {
		t.Fatalf("LOG_RM while the store fails: %v, want OK", s)
	}
	return st, hosts, g, srv, c
}

// TestLogRmStoreFails: while the store fails removals, LOG_RMs are still
// answered OK and their entries not given again; the removals are retried
// and land once the store works again.
func TestLogRmStoreFails(t *testing.T) {
	t.Parallel()
	st, hosts, g, srv, c := removedWhileFailing(t)
	waitFor(t, func() bool { return g.calls.Load() >= 2 }) // retried
	if a, _ := c.log(hosts[0].IP, 1024); a.Status != svpwire.StatusOK || len(a.Entries) != 0 {
		t.Errorf("log after its LOG_RM, the store failing: %+v, want empty", a)
	}
	if p := srv.RemovalsPending(); p != 1 {
		t.Errorf("%d removals pending, want 1", p)
	}
	g.fail.Store(false)
	waitFor(t, func() bool { return srv.RemovalsPending() == 0 })
	if left := storeLogLen(t, st, hosts[0]); left != 0 {
		t.Errorf("%d entries left once the store works again", left)
	}
}

// TestLogRmDrainedAtShutdown: a removal the store has not taken yet when
// the server is stopped is written before Serve returns.
func TestLogRmDrainedAtShutdown(t *testing.T) {
	t.Parallel()
	st, hosts, g, srv, _ := removedWhileFailing(t)
	waitFor(t, func() bool { return g.calls.Load() >= 1 })
	g.fail.Store(false)
	srv.cancel()
	select {
	case err := <-srv.done:
		srv.done <- err // for the cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	if left := storeLogLen(t, st, hosts[0]); left != 0 {
		t.Errorf("%d entries left in the store after Serve returned, want the removal written", left)
	}
}

// queryCounter counts the log queries a server makes of its store.
type queryCounter struct {
	store.Store
	logs, owners atomic.Int32
}

func (q *queryCounter) Log(ctx context.Context, ip netip.Addr, maxBytes int) ([]store.LogEntry, error) {
	q.logs.Add(1)
	return q.Store.Log(ctx, ip, maxBytes)
}

func (q *queryCounter) LogOwners(ctx context.Context, ids [][16]byte) ([]string, error) {
	q.owners.Add(1)
	return q.Store.LogOwners(ctx, ids)
}

// TestIdleLogReqsQueryNothing: once a host's log was read empty, its
// LOG_REQs, held and answered empty one after another, read the store no
// more until an entry is appended; the entries it is given are removed
// by LOG_RM without asking the store who owns them, and others' are
// still checked.
func TestIdleLogReqsQueryNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openStore(t, newDSN(t, "sqlite"))
	must(t, st.SetHost(ctx, hostA, []netip.Addr{loopback}))
	must(t, st.SetHost(ctx, hostB, nil))
	must(t, st.AddVNIC(ctx, store.VNIC{VNetID: 42, MAC: mac2, Host: "b"}))
	l := newMapLookups()
	l.sources[loopback] = []store.Host{hostA}
	q := &queryCounter{Store: st}
	srv := startServer(t, q, withLookups(l, 20*time.Millisecond))
	c := dial(t, srv.addr)
	for i := range 10 {
		if a, _ := c.log(hostA.IP, 1024); a.Status != svpwire.StatusOK || len(a.Entries) != 0 {
			t.Fatalf("idle LOG_REQ %d: %+v", i, a)
		}
	}
	if n := q.logs.Load(); n != 1 {
		t.Errorf("10 idle LOG_REQs read the log %d times, want once", n)
	}

	// heldAck reads the answer to a held LOG_REQ over a change; the hold
	// is short, and on a loaded machine may run out before the change
	// commits: the empty answer is then followed by a LOG_REQ that finds
	// the entries.
	heldAck := func() (svpwire.LogAck, error) {
		a, err := svpwire.DecodeLogAck(c.next().Body)
		for try := 0; err == nil && a.Status == svpwire.StatusOK && len(a.Entries) == 0 && try < 5; try++ {
			a, _ = c.log(hostA.IP, 1024)
		}
		return a, err
	}
	c.send(svpwire.LogReq{Count: 1024, IP: hostA.IP}.AppendFrame(nil, 100))
	must(t, st.AddVNIC(ctx, store.VNIC{VNetID: 42, MAC: mac1, Host: "a"}))
	l.notify(hostA.IP)
	a, err := heldAck()
	if err != nil || a.Status != svpwire.StatusOK || len(a.Entries) == 0 {
		t.Fatalf("LOG_REQ held over an append: %+v %v", a, err)
	}
	ids := make([][16]byte, len(a.Entries))
	for i, e := range a.Entries {
		ids[i] = e.ID
	}
	if s := c.logRm(ids...); s != svpwire.StatusOK {
		t.Errorf("LOG_RM of the entries given: %v", s)
	}
	if n := q.owners.Load(); n != 0 {
		t.Errorf("LOG_RM of entries given on the connection asked the store for owners %d times", n)
	}
	waitFor(t, func() bool { return srv.RemovalsPending() == 0 })
	if es, _ := st.Log(ctx, hostA.IP, 1024); len(es) != 0 {
		t.Errorf("%d entries left after LOG_RM", len(es))
	}
	// Host b's entry was never given here: checked, and refused.
	bs, err := st.Log(ctx, hostB.IP, 1024)
	must(t, err)
	if len(bs) == 0 {
		t.Fatal("host b has no entry")
	}
	if s := c.logRm(bs[0].ID); s != svpwire.StatusFatal {
		t.Errorf("LOG_RM of another host's entry: %v, want FATAL", s)
	}
	if n := q.owners.Load(); n != 1 {
		t.Errorf("LOG_RM of an entry not given asked for owners %d times, want once", n)
	}
	// The client removed all it was given, the whole log: known empty,
	// no read.
	before := q.logs.Load()
	for range 3 {
		c.log(hostA.IP, 1024)
	}
	if n := q.logs.Load() - before; n != 0 {
		t.Errorf("3 idle LOG_REQs after the log was drained read it %d times, want none", n)
	}

	// An append between the LOG_ACK and the LOG_RM: the log is read again.
	c.send(svpwire.LogReq{Count: 1024, IP: hostA.IP}.AppendFrame(nil, 101))
	l.waitTaken(t, hostA.IP)
	must(t, st.MoveVNIC(ctx, 42, mac1, "b"))
	l.notify(hostA.IP)
	a, err = heldAck()
	if err != nil || len(a.Entries) == 0 {
		t.Fatalf("LOG_REQ held over a move: %+v %v", a, err)
	}
	first := a.Entries
	must(t, st.MoveVNIC(ctx, 42, mac1, "a"))
	l.notify(hostA.IP)
	for _, e := range first {
		if s := c.logRm(e.ID); s != svpwire.StatusOK {
			t.Fatalf("LOG_RM: %v", s)
		}
	}
	if a, _ := c.log(hostA.IP, 1024); len(a.Entries) == 0 {
		t.Error("the entries appended before the LOG_RM were not given: the log was wrongly taken as empty")
	}
}

// TestLogRmNextPage: a host whose log is longer than one LOG_ACK removes
// the page it got and asks for the next while that removal is still
// being written: it gets the next page at once, not a hold (the removal
// is written first, then the log read again).
func TestLogRmNextPage(t *testing.T) {
	t.Parallel()
	st := openStore(t, newDSN(t, "sqlite"))
	hosts := logHosts(t, st, 2)
	for _, to := range []string{"h0", "h1", "h0"} {
		must(t, st.MoveVNIC(context.Background(), 42, [6]byte{2, 8, 0x20, 0, 1, 0}, to))
	}
	g := newGatedStore(st)
	l := newMapLookups()
	l.sources[loopback] = hosts
	srv := startServer(t, g, withLookups(l, time.Minute))
	c := dial(t, srv.addr)
	page := uint32(2 * svpwire.LogVL2Size)
	a, _ := c.log(hosts[0].IP, page)
	if len(a.Entries) != 2 {
		t.Fatalf("first page: %+v", a)
	}
	if s := c.logRm(a.Entries[0].ID, a.Entries[1].ID); s != svpwire.StatusOK {
		t.Fatalf("LOG_RM: %v", s)
	}
	<-g.entered // the removal is being written, and waits
	reads := g.reads.Load()
	c.send(svpwire.LogReq{Count: page, IP: hosts[0].IP}.AppendFrame(nil, 200))
	waitFor(t, func() bool { return g.reads.Load() > reads }) // read while the removal is pending
	close(g.release)
	f := c.next()
	next, err := svpwire.DecodeLogAck(f.Body)
	if err != nil || f.ID != 200 || len(next.Entries) == 0 {
		t.Fatalf("next page: %v id %d %+v %v", f.Op, f.ID, next, err)
	}
	for _, e := range next.Entries {
		if e.ID == a.Entries[0].ID || e.ID == a.Entries[1].ID {
			t.Errorf("next page gives again an entry removed: %x", e.ID)
		}
	}
}
