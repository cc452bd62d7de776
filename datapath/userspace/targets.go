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
// flushing while the answer's caller sends them (at most maxQueueFrames):
// a frame for the MAC that arrives meanwhile waits for the flush to end,
// so that a MAC's frames leave in the order they came. Removing or
// flushing a flushing entry takes effect when its flush ends.
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
	// a pending lookup.
	queue  [][]byte
	qbytes int
	// when is the start of a pending lookup, or the expiry of a
	// negative entry.
	when time.Time
	// flushed is closed when the flush of a flushing entry ends; remove
	// makes its end delete the entry.
	flushed chan struct{}
	remove  bool
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
	missWait                        // a flush is on: wait for it, then ask again
	missQueued                      // held; a lookup is outstanding
	missNewLookup                   // held; the caller must report the miss
	missQueueFull
	missNegative
	missAdminDrop
	missTableFull
	missTooMany
)

// hold decides the fate of a frame for mac that found no valid entry,
// queueing a copy of frame when a lookup is (or is now) outstanding. With
// missWait it returns the channel that closes when the flush ends.
func (tt *targetTable) hold(mac ether.MAC, frame []byte, now time.Time) (missResult, encap.Dest, <-chan struct{}) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	r, d := tt.holdLocked(mac, frame, now)
	if r == missWait {
		return r, d, tt.m[mac].flushed
	}
	return r, d, nil
}

func (tt *targetTable) holdLocked(mac ether.MAC, frame []byte, now time.Time) (missResult, encap.Dest) {
	e := tt.m[mac]
	if e != nil {
		switch e.state {
		case stateValid:
			return missSend, e.dest
		case stateFlushing:
			return missWait, encap.Dest{}
		case stateAdminDrop:
			return missAdminDrop, encap.Dest{}
		case stateNegative:
			if now.Before(e.when) {
				return missNegative, encap.Dest{}
			}
			delete(tt.m, mac)
			e = nil
		case statePending:
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

// set makes mac valid for dest and returns the frames held for it. With
// frames the entry is flushing: the caller sends them, in order, then
// calls flushed(mac, f), and until then newer frames for mac wait.
func (tt *targetTable) set(mac ether.MAC, dest encap.Dest) ([][]byte, heldFlush) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	e := tt.m[mac]
	switch {
	case e == nil:
		tt.m[mac] = &tentry{state: stateValid, dest: dest}
		return nil, heldFlush{}
	case e.state == stateFlushing:
		// Another answer's caller is sending the held frames; the
		// newer destination holds from the end of that flush.
		e.dest = dest
		return nil, heldFlush{}
	case e.state == statePending:
		tt.pending--
	}
	q := e.queue
	if len(q) == 0 {
		*e = tentry{state: stateValid, dest: dest}
		return nil, heldFlush{}
	}
	f := heldFlush{e: e, done: make(chan struct{})}
	*e = tentry{state: stateFlushing, dest: dest, flushed: f.done}
	return q, f
}

// heldFlush is one answer's sending of the held frames.
type heldFlush struct {
	e    *tentry // nil: nothing to send
	done chan struct{}
}

// flushed ends the flush f, which set returned: the entry becomes valid
// (or goes, when it was removed meanwhile), unless something else
// overruled it since (an operator's drop entry), and the frames waiting
// for it go on.
func (tt *targetTable) flushed(mac ether.MAC, f heldFlush) {
	if f.e == nil {
		return
	}
	tt.mu.Lock()
	if e := f.e; tt.m[mac] == e && e.state == stateFlushing && e.flushed == f.done {
		e.flushed = nil
		if e.remove {
			delete(tt.m, mac)
		} else {
			e.state = stateValid
		}
	}
	tt.mu.Unlock()
	close(f.done)
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
		// A late "drop" does not overrule a valid, flushing or admin
		// entry.
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
	// A flush in progress still ends (flushed), finding this instead.
	*e = tentry{state: stateAdminDrop}
	return n
}

// remove deletes mac's answer; a flushing one goes when its flush ends.
// A lookup in flight is left to finish, as illumos does: its frames are
// not the operator's to lose.
func (tt *targetTable) remove(mac ether.MAC) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	tt.removeLocked(mac, tt.m[mac])
}

func (tt *targetTable) removeLocked(mac ether.MAC, e *tentry) {
	switch {
	case e == nil || e.state == statePending:
	case e.state == stateFlushing:
		e.remove = true
	default:
		delete(tt.m, mac)
	}
}

// flush deletes every answer, leaving lookups in flight to finish.
func (tt *targetTable) flush() {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	for mac, e := range tt.m {
		tt.removeLocked(mac, e)
	}
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
