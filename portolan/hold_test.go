package portolan

import (
	"context"
	"runtime"
	"testing"
	"time"

	"overlaynet/portolan/index"
	"overlaynet/svpwire"
)

// TestHeldWakeTogether: LOG_REQs held by many hosts are woken by one
// change through the index (its report of the signals it closed, with no
// goroutine per held request) and each answered with its entry; the
// hosts that never send their next request (as an illumos client, which
// asks on its own timer) do not stall the deliverer's window.
func TestHeldWakeTogether(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := openStore(t, newDSN(t, "sqlite"))
	n := 3*maxTrips + 5
	hosts := logHosts(t, st, n)
	ix, err := index.Load(ctx, st, nil)
	must(t, err)
	go ix.Follow(ctx)
	srv := startServer(t, st, withLookups(ix, time.Minute))
	clients := make([]*client, n)
	removed := make([][16]byte, n) // what each host removed: never given again
	for i, h := range hosts {
		c := dial(t, srv.addr)
		clients[i] = c
		a, _ := c.log(h.IP, 1024)
		if len(a.Entries) != 1 {
			t.Fatalf("host %d's log: %+v", i, a)
		}
		removed[i] = a.Entries[0].ID
		if s := c.logRm(removed[i]); s != svpwire.StatusOK {
			t.Fatalf("LOG_RM %d: %v", i, s)
		}
	}
	before := runtime.NumGoroutine()
	for i, c := range clients {
		c.send(svpwire.LogReq{Count: 1024, IP: hosts[i].IP}.AppendFrame(nil, 100))
	}
	waitFor(t, func() bool {
		srv.holds.mu.Lock()
		defer srv.holds.mu.Unlock()
		return len(srv.holds.timeouts) == n
	})
	if grew := runtime.NumGoroutine() - before; grew > n/4 {
		t.Errorf("%d goroutines more with %d LOG_REQs held, want none per held request", grew, n)
	}
	// Back to host 0 (logHosts moved it to host 1): every host's log
	// gets an entry.
	must(t, st.MoveVNIC(ctx, 42, [6]byte{2, 8, 0x20, 0, 1, 0}, hosts[0].ID))
	for i, c := range clients {
		f := c.next()
		a, err := svpwire.DecodeLogAck(f.Body)
		if err != nil || f.ID != 100 || a.Status != svpwire.StatusOK || len(a.Entries) == 0 {
			t.Fatalf("host %d's held LOG_REQ: %v id %d %+v %v, want the move's entries", i, f.Op, f.ID, a, err)
		}
		var ids [][16]byte
		for _, e := range a.Entries {
			if e.ID == removed[i] {
				t.Errorf("host %d was given again the entry it removed", i)
			}
			ids = append(ids, e.ID)
		}
		if i%2 == 0 {
			if s := c.logRm(ids...); s != svpwire.StatusOK {
				t.Errorf("LOG_RM %d: %v", i, s)
			}
		}
	}
}

// TestHeldManyOnOneSignal: several LOG_REQs of one connection held on
// the same host's signal are each answered once when it closes, and the
// connection goes on.
func TestHeldManyOnOneSignal(t *testing.T) {
	t.Parallel()
	s, _, l := heldServer(t, time.Minute)
	c := dial(t, s.addr)
	const n = 3
	for id := range uint32(n) {
		c.send(svpwire.LogReq{Count: 1024, IP: hostA.IP}.AppendFrame(nil, 100+id))
	}
	waitFor(t, func() bool {
		s.holds.mu.Lock()
		defer s.holds.mu.Unlock()
		return len(s.holds.timeouts) == n
	})
	l.notify(hostA.IP)
	seen := map[uint32]bool{}
	for range n {
		f := c.next()
		if f.Op != svpwire.OpLogAck || f.ID < 100 || f.ID >= 100+n || seen[f.ID] {
			t.Fatalf("reply %v id %d (seen %v)", f.Op, f.ID, seen)
		}
		seen[f.ID] = true
	}
	c.ping(7)
	if h := s.holds.count(); h != 0 {
		t.Errorf("%d LOG_REQs still registered after all were answered", h)
	}
}
