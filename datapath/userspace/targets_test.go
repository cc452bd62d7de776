package userspace

import (
	"net/netip"
	"testing"
	"time"

	"overlaynet/datapath"
	"overlaynet/encap"
)

var (
	macA  = datapath.MAC{2, 8, 32, 0, 0, 1}
	destA = encap.Dest{IP: netip.MustParseAddr("192.0.2.1"), Port: 4789}
)

func TestTargetMissHoldsThenSends(t *testing.T) {
	tt := newTargetTable()
	now := time.Now()
	if res, _ := tt.hold(macA, []byte("frame-1"), now); res != missNewLookup {
		t.Fatalf("first frame: %v, want a new lookup", res)
	}
	if res, _ := tt.hold(macA, []byte("frame-2"), now); res != missQueued {
		t.Fatalf("second frame: %v, want queued behind the lookup", res)
	}
	if got := tt.list(); len(got) != 1 || got[0].State != datapath.TargetPending {
		t.Fatalf("list while pending: %+v", got)
	}
	held := tt.set(macA, destA)
	if len(held) != 2 || string(held[0][headroom:]) != "frame-1" || string(held[1][headroom:]) != "frame-2" {
		t.Fatalf("held frames %q, want both in order with headroom", held)
	}
	if d, ok := tt.valid(macA); !ok || d != destA {
		t.Fatalf("valid after set: %v %v", d, ok)
	}
	if tt.pending != 0 {
		t.Fatalf("pending count %d after the answer", tt.pending)
	}
}

func TestTargetQueueBounded(t *testing.T) {
	tt := newTargetTable()
	now := time.Now()
	tt.hold(macA, make([]byte, 100), now)
	for i := 1; i < maxQueueFrames; i++ {
		if res, _ := tt.hold(macA, make([]byte, 100), now); res != missQueued {
			t.Fatalf("frame %d: %v", i, res)
		}
	}
	if res, _ := tt.hold(macA, make([]byte, 100), now); res != missQueueFull {
		t.Fatalf("frame past the frame limit: %v, want queue full", res)
	}
	tt2 := newTargetTable()
	tt2.hold(macA, make([]byte, maxQueueBytes-10), now)
	if res, _ := tt2.hold(macA, make([]byte, 20), now); res != missQueueFull {
		t.Fatalf("frame past the byte limit: %v, want queue full", res)
	}
}

func TestTargetNegativeAnswerExpires(t *testing.T) {
	tt := newTargetTable()
	now := time.Now()
	tt.hold(macA, []byte("x"), now)
	tt.hold(macA, []byte("y"), now)
	if n := tt.drop(macA, false, now); n != 2 {
		t.Fatalf("drop dropped %d held frames, want 2", n)
	}
	if res, _ := tt.hold(macA, []byte("z"), now.Add(time.Second)); res != missNegative {
		t.Fatalf("within the negative TTL: %v, want negative", res)
	}
	if res, _ := tt.hold(macA, []byte("z"), now.Add(negativeTTL+time.Millisecond)); res != missNewLookup {
		t.Fatalf("after the negative TTL: %v, want a new lookup", res)
	}
	if len(tt.list()) != 1 { // the new pending entry; negative ones are not listed
		t.Fatalf("list: %+v", tt.list())
	}
}

func TestTargetLateDropDoesNotOverrule(t *testing.T) {
	tt := newTargetTable()
	now := time.Now()
	tt.set(macA, destA)
	tt.drop(macA, false, now)
	if _, ok := tt.valid(macA); !ok {
		t.Fatal("a lookup's drop replaced a valid entry")
	}
	tt.drop(macA, true, now)
	if res, _ := tt.hold(macA, []byte("x"), now); res != missAdminDrop {
		t.Fatalf("after an admin drop: %v", res)
	}
	if got := tt.list(); len(got) != 1 || got[0].State != datapath.TargetDrop {
		t.Fatalf("list: %+v", got)
	}
	tt.remove(macA)
	if res, _ := tt.hold(macA, []byte("x"), now); res != missNewLookup {
		t.Fatalf("after remove: %v", res)
	}
	tt.remove(macA) // pending: the lookup in flight stays
	if res, _ := tt.hold(macA, []byte("y"), now); res != missQueued {
		t.Fatalf("remove cancelled a lookup in flight: %v", res)
	}
}

func TestTargetLimits(t *testing.T) {
	tt := newTargetTable()
	now := time.Now()
	for i := 0; i < maxPending; i++ {
		mac := datapath.MAC{2, 0, 0, 0, byte(i >> 8), byte(i)}
		if res, _ := tt.hold(mac, []byte("x"), now); res != missNewLookup {
			t.Fatalf("lookup %d: %v", i, res)
		}
	}
	if res, _ := tt.hold(datapath.MAC{2, 1}, []byte("x"), now); res != missTooMany {
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
	// A stale pending entry (the answer never came) is given up.
	tt.hold(macA, []byte("x"), now)
	if res, _ := tt.hold(macA, []byte("y"), now.Add(stalePending+time.Second)); res != missNewLookup {
		t.Fatalf("stale pending: %v, want a new lookup", res)
	}
}
