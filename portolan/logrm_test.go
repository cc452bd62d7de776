package portolan

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"overlaynet/portolan/store"
	"overlaynet/svpwire"
)

// gatedStore holds its first RemoveLog until released, and counts calls.
type gatedStore struct {
	store.Store
	calls   atomic.Int32
	entered chan struct{}
	release chan struct{}
	fail    error
}

func (g *gatedStore) RemoveLog(ctx context.Context, ids [][16]byte) error {
	if g.calls.Add(1) == 1 {
		close(g.entered)
		<-g.release
	}
	if g.fail != nil {
		return g.fail
	}
	return g.Store.RemoveLog(ctx, ids)
}

// TestLogRmGroupCommit: LOG_RMs arriving while one commits are committed
// together in the next transaction, each answered OK once its own ids
// are gone; a failed transaction answers FATAL to every LOG_RM in it.
func TestLogRmGroupCommit(t *testing.T) {
	for _, fail := range []bool{false, true} {
		t.Run(fmt.Sprintf("fail=%v", fail), func(t *testing.T) {
			ctx := context.Background()
			st := openStore(t, newDSN(t, "sqlite"))
			const n = 20
			var hosts []store.Host
			for i := range n {
				h := store.Host{ID: fmt.Sprintf("h%d", i), IP: netip.AddrFrom4([4]byte{198, 18, 1, byte(i)}), Port: 4789}
				must(t, st.SetHost(ctx, h, []netip.Addr{loopback}))
				hosts = append(hosts, h)
			}
			// Every host has a VNIC on the network, so a move there logs
			// an entry for every host.
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
			must(t, st.MoveVNIC(ctx, 42, [6]byte{2, 8, 0x20, 0, 1, 0}, "h1"))
			g := &gatedStore{Store: st, entered: make(chan struct{}), release: make(chan struct{})}
			if fail {
				g.fail = errors.New("disk on fire")
			}
			srv := startServer(t, g)
			clients := make([]*client, n)
			ids := make([][16]byte, n)
			for i := range clients {
				clients[i] = dial(t, srv.addr)
				a, _ := clients[i].log(hosts[i].IP, 1024)
				if a.Status != svpwire.StatusOK || len(a.Entries) != 1 {
					t.Fatalf("host %d's log: %+v", i, a)
				}
				ids[i] = a.Entries[0].ID
			}
			want := svpwire.StatusOK
			if fail {
				want = svpwire.StatusFatal
			}
			var wg sync.WaitGroup
			// The first LOG_RM holds the transaction open...
			wg.Go(func() {
				if s := clients[0].logRm(ids[0]); s != want {
					t.Errorf("LOG_RM 0: %v, want %v", s, want)
				}
			})
			<-g.entered
			// ... while the others queue behind it.
			for i := 1; i < n; i++ {
				clients[i].send(svpwire.LogRm{IDs: [][16]byte{ids[i]}}.AppendFrame(nil, 10))
			}
			waitFor(t, func() bool {
				srv.removes.mu.Lock()
				defer srv.removes.mu.Unlock()
				return len(srv.removes.pending) == n-1
			})
			close(g.release)
			for i := 1; i < n; i++ {
				f := clients[i].next()
				ack, err := svpwire.DecodeLogRmAck(f.Body)
				if err != nil || f.Op != svpwire.OpLogRmAck || ack.Status != want {
					t.Errorf("LOG_RM %d: %v %+v %v, want %v", i, f.Op, ack, err, want)
				}
			}
			wg.Wait()
			if got := g.calls.Load(); got != 2 {
				t.Errorf("%d transactions for %d LOG_RMs, want 2 (the first, then the rest together)", got, n)
			}
			for i, h := range hosts {
				es, err := st.Log(ctx, h.IP, 1024)
				must(t, err)
				if left := len(es); left != map[bool]int{false: 0, true: 1}[fail] {
					t.Errorf("host %d: %d entries left", i, left)
				}
			}
		})
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
