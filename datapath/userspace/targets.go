package userspace

import (
	"sync"
	"time"

	"overlaynet/datapath"
	"overlaynet/encap"
	"overlaynet/ether"
)

// Limits of a dynamic overlay's target table (SPEC section 2: a small
// bounded queue per pending destination; illumos keeps 128 KiB per entry
// but has no other bounds, and its table grows forever).
const (
	maxQueueFrames = 32
	maxQueueBytes  = 64 << 10
	maxPending     = 1024    // lookups outstanding at once
	maxEntries     = 1 << 16 // entries of any kind
)

type entryState int

// A pending entry lasts until the lookup engine answers, which it does
// for every miss within its timeout: the engine owns the lookup, the
// table only holds its frames. An answer with held frames makes the entry
// flushing: frames that arrive while the answer's caller sends the held
// ones join the queue behind them, so that a MAC's frames leave in the
// order they came.
const (
	stateValid entryState = iota
	stateAdminDrop
	statePending
	stateFlushing
	stateNegative
)

type tentry struct {
	state entryState
	dest  encap.Dest
	// queue holds copies of frames in overlay form, each starting at
	// headroom so that it can be encapsulated in place: frames held for
	// a pending lookup, or arrived while flushing.
	queue  [][]byte
	qbytes int
	// when is the start of a pending lookup, or the expiry of a
	// negative entry.
	when time.Time
}

// targetTable maps destination MACs to underlay destinations.
type targetTable struct {
	mu      sync.RWMutex
	m       map[ether.MAC]*tentry
	pending int
}

func newTargetTable() *targetTable { return &targetTable{m: map[ether.MAC]*tentry{}} }

// valid returns the destination of mac when the entry is valid; the
// common case, under a read lock only.
func (tt *targetTable) valid(mac ether.MAC) (encap.Dest, bool) {
	tt.mu.RLock()
	e := tt.m[mac]
	var d encap.Dest
	ok := e != nil && e.state == stateValid
	if ok {
		d = e.dest
	}
	tt.mu.RUnlock()
	return d, ok
}

// missResult says what toTarget should do with a frame that found no
// valid entry.
type missResult int

const (
	missSend      missResult = iota // the entry became valid meanwhile: send
	missQueued                      // held; a lookup is outstanding
	missNewLookup                   // held; the caller must report the miss
	missQueueFull
	missNegative
	missAdminDrop
	missTableFull
	missTooMany
)

// hold decides the fate of a frame for mac that found no valid entry,
// queueing a copy of frame when a lookup is (or is now) outstanding.
func (tt *targetTable) hold(mac ether.MAC, frame []byte, now time.Time) (missResult, encap.Dest) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	e := tt.m[mac]
	if e != nil {
		switch e.state {
		case stateValid:
			return missSend, e.dest
		case stateAdminDrop:
			return missAdminDrop, encap.Dest{}
		case stateNegative:
			if now.Before(e.when) {
				return missNegative, encap.Dest{}
			}
			delete(tt.m, mac)
			e = nil
		case statePending, stateFlushing:
			if len(e.queue) >= maxQueueFrames || e.qbytes+len(frame) > maxQueueBytes {
				return missQueueFull, encap.Dest{}
			}
			e.queue = append(e.queue, copyWithHeadroom(frame))
			e.qbytes += len(frame)
			return missQueued, encap.Dest{}
		}
	}
	if len(tt.m) >= maxEntries {
		tt.sweep(now)
		if len(tt.m) >= maxEntries {
			return missTableFull, encap.Dest{}
		}
	}
	if tt.pending >= maxPending {
		return missTooMany, encap.Dest{}
	}
	tt.m[mac] = &tentry{state: statePending, when: now,
		queue: [][]byte{copyWithHeadroom(frame)}, qbytes: len(frame)}
	tt.pending++
	return missNewLookup, encap.Dest{}
}

// sweep removes expired negative entries. Called with mu held.
func (tt *targetTable) sweep(now time.Time) {
	for mac, e := range tt.m {
		if e.state == stateNegative && !now.Before(e.when) {
			delete(tt.m, mac)
		}
	}
}

// set makes mac valid for dest and returns the frames held for it. The
// caller sends them, in order, then calls drained until it returns none:
// until then the entry is flushing and newer frames queue behind.
func (tt *targetTable) set(mac ether.MAC, dest encap.Dest) [][]byte {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	e := tt.m[mac]
	switch {
	case e == nil:
		tt.m[mac] = &tentry{state: stateValid, dest: dest}
		return nil
	case e.state == stateFlushing:
		// Another answer's caller is sending: it sends the rest here.
		e.dest = dest
		return nil
	case e.state == statePending:
		tt.pending--
	}
	q := e.queue
	if len(q) == 0 {
		*e = tentry{state: stateValid, dest: dest}
		return nil
	}
	*e = tentry{state: stateFlushing, dest: dest}
	return q
}

// drained returns the frames that queued while the caller of set sent
// the held ones, and where they go; with none, the entry is valid and
// the flush is over.
func (tt *targetTable) drained(mac ether.MAC) ([][]byte, encap.Dest) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	e := tt.m[mac]
	if e == nil || e.state != stateFlushing {
		return nil, encap.Dest{} // removed or overruled meanwhile
	}
	q := e.queue
	e.queue, e.qbytes = nil, 0
	if len(q) == 0 {
		e.state = stateValid
	}
	return q, e.dest
}

// drop answers mac with "no destination" for ttl and returns how many
// held frames it dropped.
func (tt *targetTable) drop(mac ether.MAC, ttl time.Duration, now time.Time) int {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	e := tt.m[mac]
	if e == nil {
		return 0 // nobody asked: nothing to remember
	}
	if e.state != statePending && e.state != stateNegative {
		// A late "drop" does not overrule a valid or admin entry.
		return 0
	}
	if e.state == statePending {
		tt.pending--
	}
	n := len(e.queue)
	*e = tentry{state: stateNegative, when: now.Add(ttl)}
	return n
}

// setDrop makes mac's entry an operator's "drop" and returns how many
// held frames it dropped.
func (tt *targetTable) setDrop(mac ether.MAC) int {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	e := tt.m[mac]
	if e == nil {
		e = &tentry{}
		tt.m[mac] = e
	}
	if e.state == statePending {
		tt.pending--
	}
	n := len(e.queue)
	*e = tentry{state: stateAdminDrop}
	return n
}

// remove deletes mac's answer and returns how many frames queued behind
// a flush it dropped. A lookup in flight is left to finish, as illumos
// does: its frames are not the operator's to lose.
func (tt *targetTable) remove(mac ether.MAC) int {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	if e := tt.m[mac]; e != nil && e.state != statePending {
		delete(tt.m, mac)
		return len(e.queue)
	}
	return 0
}

// flush deletes every answer, leaving lookups in flight to finish, and
// returns how many frames queued behind flushes it dropped.
func (tt *targetTable) flush() int {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	n := 0
	for mac, e := range tt.m {
		if e.state != statePending {
			n += len(e.queue)
			delete(tt.m, mac)
		}
	}
	return n
}

// list returns the entries an operator sees: valid, admin drop, pending.
func (tt *targetTable) list() []datapath.Target {
	tt.mu.RLock()
	defer tt.mu.RUnlock()
	out := make([]datapath.Target, 0, len(tt.m))
	for mac, e := range tt.m {
		t := datapath.Target{MAC: mac, Dest: e.dest}
		switch e.state {
		case stateValid, stateFlushing:
			t.State = datapath.TargetValid
		case stateAdminDrop:
			t.State = datapath.TargetDrop
		case statePending:
			t.State = datapath.TargetPending
		default:
			continue
		}
		out = append(out, t)
	}
	return out
}

func copyWithHeadroom(frame []byte) []byte {
	b := make([]byte, headroom+len(frame))
	copy(b[headroom:], frame)
	return b
}
