package userspace

import (
	"net/netip"
	"testing"
	"time"

	"overlaynet/datapath"
	"overlaynet/encap"
	"overlaynet/ether"
)

var (
	macT  = ether.MAC{2, 8, 32, 0, 0, 1}
	destA = encap.Dest{IP: netip.MustParseAddr("192.0.2.1"), Port: 4789}
)

func TestTargetMissHoldsThenSends(t *testing.T) {
	tt := newTargetTable()
	now := time.Now()
	if res, _, _ := tt.hold(macT, []byte("frame-1"), now); res != missNewLookup {
		t.Fatalf("first frame: %v, want a new lookup", res)
	}
	if res, _, _ := tt.hold(macT, []byte("frame-2"), now); res != missQueued {
		t.Fatalf("second frame: %v, want queued behind the lookup", res)
	}
	if got := tt.list(); len(got) != 1 || got[0].State != datapath.TargetPending {
		t.Fatalf("list while pending: %+v", got)
	}
	held, f := tt.set(macT, destA)
	if len(held) != 2 || string(held[0][headroom:]) != "frame-1" || string(held[1][headroom:]) != "frame-2" {
		t.Fatalf("held frames %q, want both in order with headroom", held)
	}
	// Until the caller has sent them, newer frames wait.
	if _, ok := tt.valid(macT); ok {
		t.Fatal("valid while the held frames are being sent: a newer frame could overtake them")
	}
	tt.flushed(macT, f)
	if d, ok := tt.valid(macT); !ok || d != destA {
		t.Fatalf("valid after set: %v %v", d, ok)
	}
	if tt.pending != 0 {
		t.Fatalf("pending count %d after the answer", tt.pending)
	}
}

// TestTargetFlushInOrder: a frame that arrives while the held ones are
// sent waits for the flush, then goes to the latest answer's destination;
// removing, flushing or dropping meanwhile takes effect at its end.
func TestTargetFlushInOrder(t *testing.T) {
	tt := newTargetTable()
	now := time.Now()
	tt.hold(macT, []byte("1"), now)
	held, f := tt.set(macT, destA)
	res, _, wait := tt.hold(macT, []byte("2"), now)
	if res != missWait || wait == nil {
		t.Fatalf("a frame during the flush: %v, want to wait for it", res)
	}
	destB := encap.Dest{IP: netip.MustParseAddr("192.0.2.2"), Port: 4789}
	if again, g := tt.set(macT, destB); again != nil || g.e != nil {
		t.Fatalf("a second answer during the flush returned %q: two senders would race", again)
	}
	if got := tt.list(); len(got) != 1 || got[0].State != datapath.TargetValid {
		t.Fatalf("list during the flush: %+v, want valid", got)
	}
	select {
	case <-wait:
		t.Fatal("the flush ended before its sender said so")
	default:
	}
	tt.flushed(macT, f)
	<-wait
	if res, d, _ := tt.hold(macT, []byte("2"), now); len(held) != 1 || res != missSend || d != destB {
		t.Fatalf("after the flush: %v to %v, want send to %v", res, d, destB)
	}

	// Removed (or flushed) during a flush: gone when it ends, not before.
	for _, del := range []func(){func() { tt.remove(macT) }, tt.flush} {
		tt.remove(macT)
		tt.hold(macT, []byte("3"), now)
		_, f := tt.set(macT, destA)
		del()
		if res, _, _ := tt.hold(macT, []byte("4"), now); res != missWait {
			t.Fatalf("removed during a flush: %v, want to wait for its end", res)
		}
		tt.flushed(macT, f)
		if res, _, _ := tt.hold(macT, []byte("4"), now); res != missNewLookup {
			t.Fatalf("after a flush removed meanwhile: %v, want a new lookup", res)
		}
		_, f = tt.set(macT, destA)
		tt.flushed(macT, f)
	}

	// An operator's drop entry overrules the flush; its end leaves it so
	// and frees the waiters.
	tt.remove(macT)
	tt.hold(macT, []byte("5"), now)
	_, f = tt.set(macT, destA)
	_, _, wait = tt.hold(macT, []byte("6"), now)
	tt.setDrop(macT)
	tt.flushed(macT, f)
	<-wait
	if res, _, _ := tt.hold(macT, []byte("6"), now); res != missAdminDrop {
		t.Fatalf("a drop entry set during a flush: %v, want admin drop", res)
	}
	// A new flush (after a drop entry and its removal) is not ended by
	// the old one's sender.
	tt.remove(macT)
	tt.hold(macT, []byte("7"), now)
	_, old := tt.set(macT, destA)
	tt.setDrop(macT)
	tt.remove(macT)
	tt.hold(macT, []byte("8"), now)
	_, f = tt.set(macT, destA)
	tt.flushed(macT, old)
	if res, _, _ := tt.hold(macT, []byte("9"), now); res != missWait {
		t.Fatalf("an old flush's end ended a new one: %v", res)
	}
	tt.flushed(macT, f)
	if res, _, _ := tt.hold(macT, []byte("9"), now); res != missSend {
		t.Fatalf("after the new flush: %v", res)
	}
}

func TestTargetQueueBounded(t *testing.T) {
	tt := newTargetTable()
	now := time.Now()
	tt.hold(macT, make([]byte, 100), now)
	for i := 1; i < maxQueueFrames; i++ {
		if res, _, _ := tt.hold(macT, make([]byte, 100), now); res != missQueued {
			t.Fatalf("frame %d: %v", i, res)
		}
	}
	if res, _, _ := tt.hold(macT, make([]byte, 100), now); res != missQueueFull {
		t.Fatalf("frame past the frame limit: %v, want queue full", res)
	}
	tt2 := newTargetTable()
	tt2.hold(macT, make([]byte, maxQueueBytes-10), now)
	if res, _, _ := tt2.hold(macT, make([]byte, 20), now); res != missQueueFull {
		t.Fatalf("frame past the byte limit: %v, want queue full", res)
	}
}

func TestTargetNegativeAnswerExpires(t *testing.T) {
	tt := newTargetTable()
	now := time.Now()
	tt.hold(macT, []byte("x"), now)
	tt.hold(macT, []byte("y"), now)
	const negativeTTL = 2 * time.Second
	if n := tt.drop(macT, negativeTTL, now); n != 2 {
		t.Fatalf("drop dropped %d held frames, want 2", n)
	}
	if res, _, _ := tt.hold(macT, []byte("z"), now.Add(time.Second)); res != missNegative {
		t.Fatalf("within the negative TTL: %v, want negative", res)
	}
	if res, _, _ := tt.hold(macT, []byte("z"), now.Add(negativeTTL+time.Millisecond)); res != missNewLookup {
		t.Fatalf("after the negative TTL: %v, want a new lookup", res)
	}
	if len(tt.list()) != 1 { // the new pending entry; negative ones are not listed
		t.Fatalf("list: %+v", tt.list())
	}
}

func TestTargetLateDropDoesNotOverrule(t *testing.T) {
	tt := newTargetTable()
	now := time.Now()
	tt.set(macT, destA)
	tt.drop(macT, time.Second, now)
	if _, ok := tt.valid(macT); !ok {
		t.Fatal("a lookup's drop replaced a valid entry")
	}
	if tt.drop(ether.MAC{2, 9}, time.Second, now); len(tt.m) != 1 {
		t.Fatal("a drop nobody asked for was remembered")
	}
	tt.setDrop(macT)
	if res, _, _ := tt.hold(macT, []byte("x"), now); res != missAdminDrop {
		t.Fatalf("after an admin drop: %v", res)
	}
	if got := tt.list(); len(got) != 1 || got[0].State != datapath.TargetDrop {
		t.Fatalf("list: %+v", got)
	}
	tt.remove(macT)
	if res, _, _ := tt.hold(macT, []byte("x"), now); res != missNewLookup {
		t.Fatalf("after remove: %v", res)
	}
	tt.remove(macT) // pending: the lookup in flight stays
	if res, _, _ := tt.hold(macT, []byte("y"), now); res != missQueued {
		t.Fatalf("remove cancelled a lookup in flight: %v", res)
	}
}

func TestTargetLimits(t *testing.T) {
	tt := newTargetTable()
	now := time.Now()
	for i := 0; i < maxPending; i++ {
		mac := ether.MAC{2, 0, 0, 0, byte(i >> 8), byte(i)}
		if res, _, _ := tt.hold(mac, []byte("x"), now); res != missNewLookup {
			t.Fatalf("lookup %d: %v", i, res)
		}
	}
	if res, _, _ := tt.hold(ether.MAC{2, 1}, []byte("x"), now); res != missTooMany {
		t.Fatalf("past the pending limit: %v, want too many", res)
	}
	tt.flush()
	if tt.pending != maxPending {
		t.Fatal("flush cancelled lookups in flight")
	}
	for mac := range tt.m {
		_, f := tt.set(mac, destA)
		tt.flushed(mac, f)
	}
	tt.flush()
	if tt.pending != 0 || len(tt.m) != 0 {
		t.Fatal("flush left answers")
	}
}
