package portolan

import (
	"context"
	"testing"
	"time"

	"overlaynet/ether"
	"overlaynet/portolan/store"
	"overlaynet/svpwire"
)

// blockingStore holds every VL2 lookup until release is closed.
type blockingStore struct {
	store.Store
	release chan struct{}
}

func (s blockingStore) VL2(ctx context.Context, vnetid uint32, mac ether.MAC) (store.Host, bool, error) {
	select {
	case <-s.release:
	case <-ctx.Done():
	}
	return s.Store.VL2(ctx, vnetid, mac)
}

// TestClosedInFlight: a client that closes its connection while a
// request on it is unanswered is counted; one that waits for its answers
// is not.
func TestClosedInFlight(t *testing.T) {
	st := openStore(t, newDSN(t, "sqlite"))
	release := make(chan struct{})
	s := startServer(t, blockingStore{Store: st, release: release})
	c := dial(t, s.addr)
	c.send(svpwire.VL2Req{VNetID: 42}.AppendFrame(nil, 1))
	deadline := time.Now().Add(5 * time.Second)
	for s.Requests() < 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	c.c.Close()
	for s.ClosedInFlight() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("closed in flight %d, want 1", s.ClosedInFlight())
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	c2 := dial(t, s.addr)
	c2.call(svpwire.VL2Req{VNetID: 42}, 2)
	c2.c.Close()
	for s.Connections() > 0 && time.Now().Before(deadline.Add(5*time.Second)) {
		time.Sleep(time.Millisecond) // until the server is done with both
	}
	if n := s.ClosedInFlight(); n != 1 {
		t.Errorf("closed in flight %d after a client that waited for its answer, want 1", n)
	}
}
