package portolan

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"overlaynet/epoll"
	"overlaynet/ether"
	"overlaynet/portolan/store"
	"overlaynet/svpwire"
)

// stuckStore answers no lookup until the request ends.
type stuckStore struct {
	store.Store
	asked chan struct{}
}

func (s stuckStore) VL2(ctx context.Context, _ uint32, _ ether.MAC) (store.Host, bool, error) {
	select {
	case s.asked <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return store.Host{}, false, ctx.Err()
}

func (s stuckStore) VL3(ctx context.Context, _ uint32, _ netip.Addr) (ether.MAC, store.Host, bool, error) {
	<-ctx.Done()
	return ether.MAC{}, store.Host{}, false, ctx.Err()
}

// TestLoopHeldConnectionReset: a connection whose queue is full is read
// no further, but its reset is still seen: the connection is closed and
// its requests dropped at once, not when the store answers (the event
// loop would otherwise spin on the hang-up it does not read).
func TestLoopHeldConnectionReset(t *testing.T) {
	t.Parallel()
	asked := make(chan struct{}, 1)
	s := startServer(t, stuckStore{asked: asked})
	c := dial(t, s.addr)
	// maxInFlight lookups fill the slots, workQueue more the queue, and
	// the rest stay in the socket.
	var burst []byte
	for i := range uint32(maxInFlight + 2*workQueue) {
		burst = svpwire.VL2Req{MAC: mac1, VNetID: 42}.AppendFrame(burst, i)
	}
	c.send(burst)
	<-asked
	waitFor(t, func() bool {
		cs := s.loopConns()
		return len(cs) == 1 && cs[0].isHeld()
	})
	c.c.(*net.TCPConn).SetLinger(0) // close with a reset
	c.c.Close()
	waitFor(t, func() bool { return s.Connections() == 0 })
}

// loopConns returns the connections the server's loops hold.
func (s *server) loopConns() []*lconn {
	s.loopsMu.Lock()
	defer s.loopsMu.Unlock()
	var out []*lconn
	for _, l := range s.loops {
		l.mu.Lock()
		for _, lc := range l.conns {
			if lc != nil {
				out = append(out, lc)
			}
		}
		l.mu.Unlock()
	}
	return out
}

func (lc *lconn) isHeld() bool {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return lc.held && lc.events&epoll.In == 0
}

// TestLoopCleanCloseAnswersAll: a client that sends requests and shuts
// down its writing half gets every reply, those answered in place and
// those queued, before the server closes.
func TestLoopCleanCloseAnswersAll(t *testing.T) {
	t.Parallel()
	l := newMapLookups()
	l.add(42, mac1, hostA, ip1)
	st := openStore(t, newDSN(t, "sqlite"))
	s := startServer(t, st, withLookups(l, time.Minute))
	c := dial(t, s.addr)
	var burst []byte
	const n = 50
	for i := range uint32(n) {
		if i%5 == 0 {
			burst = svpwire.BulkReq{Type: svpwire.BulkVL2}.AppendFrame(burst, i) // queued
		} else {
			burst = svpwire.VL2Req{MAC: mac1, VNetID: 42}.AppendFrame(burst, i)
		}
	}
	c.send(burst)
	c.c.(*net.TCPConn).CloseWrite()
	for range n {
		c.next()
	}
	c.expectClosed()
	waitFor(t, func() bool { return s.Connections() == 0 })
}
