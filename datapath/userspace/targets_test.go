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
	if res, _ := tt.hold(macT, []byte("frame-1"), now); res != missNewLookup {
		t.Fatalf("first frame: %v, want a new lookup", res)
	}
	if res, _ := tt.hold(macT, []byte("frame-2"), now); res != missQueued {
		t.Fatalf("second frame: %v, want queued behind the lookup", res)
	}
	if got := tt.list(); len(got) != 1 || got[0].State != datapath.TargetPending {
		t.Fatalf("list while pending: %+v", got)
	}
	held := tt.set(macT, destA)
	if len(held) != 2 || string(held[0][headroom:]) != "frame-1" || string(held[1][headroom:]) != "frame-2" {
		t.Fatalf("held frames %q, want both in order with headroom", held)
	}
	// Until the caller has sent them, newer frames queue behind.
	if _, ok := tt.valid(macT); ok {
		t.Fatal("valid while the held frames are being sent: a newer frame could overtake them")
	}
	if q, d := tt.drained(macT); len(q) != 0 || d != destA {
		t.Fatalf("drained %q to %v, want nothing more to %v", q, d, destA)
	}
	if d, ok := tt.valid(macT); !ok || d != destA {
		t.Fatalf("valid after set: %v %v", d, ok)
	}
	if tt.pending != 0 {
		t.Fatalf("pending count %d after the answer", tt.pending)
	}
}

// TestTargetFlushInOrder: frames that arrive while the held ones are sent
// leave after them, to the latest answer's destination.
func TestTargetFlushInOrder(t *testing.T) {
	tt := newTargetTable()
	now := time.Now()
	tt.hold(macT, []byte("1"), now)
	held := tt.set(macT, destA)
	if res, _ := tt.hold(macT, []byte("2"), now); res != missQueued {
		t.Fatalf("a frame during the flush: %v, want queued behind", res)
	}
	destB := encap.Dest{IP: netip.MustParseAddr("192.0.2.2"), Port: 4789}
	if again := tt.set(macT, destB); again != nil {
		t.Fatalf("a second answer during the flush returned %q: two senders would race", again)
	}
	q, d := tt.drained(macT)
	if len(held) != 1 || len(q) != 1 || string(q[0][headroom:]) != "2" || d != destB {
		t.Fatalf("held %q, then %q to %v; want 1, then 2 to %v", held, q, d, destB)
	}
	if got := tt.list(); len(got) != 1 || got[0].State != datapath.TargetValid {
		t.Fatalf("list during the flush: %+v, want valid", got)
	}
	if q, _ := tt.drained(macT); q != nil {
		t.Fatalf("drained again: %q", q)
	}
	if res, d := tt.hold(macT, []byte("3"), now); res != missSend || d != destB {
		t.Fatalf("after the flush: %v to %v, want send to %v", res, d, destB)
	}
	// Removed during a flush: what queued is dropped and counted.
	tt.remove(macT)
	tt.hold(macT, []byte("4"), now)
	tt.set(macT, destA)
	tt.hold(macT, []byte("5"), now)
	if n := tt.remove(macT); n != 1 {
		t.Fatalf("remove during a flush dropped %d frames, want 1", n)
	}
	if q, _ := tt.drained(macT); q != nil {
		t.Fatalf("drained after remove: %q", q)
	}
}

func TestTargetQueueBounded(t *testing.T) {
	tt := newTargetTable()
	now := time.Now()
	tt.hold(macT, make([]byte, 100), now)
	for i := 1; i < maxQueueFrames; i++ {
		if res, _ := tt.hold(macT, make([]byte, 100), now); res != missQueued {
			t.Fatalf("frame %d: %v", i, res)
		}
	}
	if res, _ := tt.hold(macT, make([]byte, 100), now); res != missQueueFull {
		t.Fatalf("frame past the frame limit: %v, want queue full", res)
	}
	tt2 := newTargetTable()
	tt2.hold(macT, make([]byte, maxQueueBytes-10), now)
	if res, _ := tt2.hold(macT, make([]byte, 20), now); res != missQueueFull {
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
	if res, _ := tt.hold(macT, []byte("z"), now.Add(time.Second)); res != missNegative {
		t.Fatalf("within the negative TTL: %v, want negative", res)
	}
	if res, _ := tt.hold(macT, []byte("z"), now.Add(negativeTTL+time.Millisecond)); res != missNewLookup {
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
	if res, _ := tt.hold(macT, []byte("x"), now); res != missAdminDrop {
		t.Fatalf("after an admin drop: %v", res)
	}
	if got := tt.list(); len(got) != 1 || got[0].State != datapath.TargetDrop {
		t.Fatalf("list: %+v", got)
	}
	tt.remove(macT)
	if res, _ := tt.hold(macT, []byte("x"), now); res != missNewLookup {
		t.Fatalf("after remove: %v", res)
	}
	tt.remove(macT) // pending: the lookup in flight stays
	if res, _ := tt.hold(macT, []byte("y"), now); res != missQueued {
		t.Fatalf("remove cancelled a lookup in flight: %v", res)
	}
}

func TestTargetLimits(t *testing.T) {
	tt := newTargetTable()
	now := time.Now()
	for i := 0; i < maxPending; i++ {
		mac := ether.MAC{2, 0, 0, 0, byte(i >> 8), byte(i)}
		if res, _ := tt.hold(mac, []byte("x"), now); res != missNewLookup {
			t.Fatalf("lookup %d: %v", i, res)
		}
	}
	if res, _ := tt.hold(ether.MAC{2, 1}, []byte("x"), now); res != missTooMany {
		t.Fatalf("past the pending limit: %v, want too many", res)
	}
	tt.flush()
	if tt.pending != maxPending {
		t.Fatal("flush cancelled lookups in flight")
	}
	for mac := range tt.m {
		tt.set(mac, destA)
	}
	tt.flush()
	if tt.pending != 0 || len(tt.m) != 0 {
		t.Fatal("flush left answers")
	}
}
