package userspace

import (
	"sync"
	"time"

	"overlaynet/datapath"
	"overlaynet/encap"
)

// Limits of a dynamic overlay's target table (SPEC section 2: a small
// bounded queue per pending destination; illumos keeps 128 KiB per entry
// but has no other bounds, and its table grows forever).
const (
	maxQueueFrames = 32
	maxQueueBytes  = 64 << 10
	maxPending     = 1024    // lookups outstanding at once
	maxEntries     = 1 << 16 // entries of any kind
	// negativeTTL is how long a "drop" answer is remembered, so that a
	// stream of frames to an unknown MAC costs one lookup per period.
	negativeTTL = 2 * time.Second
	// stalePending is when a pending entry whose answer never came is
	// given up, whatever the lookup engine's own timeout.
	stalePending = 30 * time.Second
)

type entryState int

const (
	stateValid entryState = iota
	stateAdminDrop
	statePending
	stateNegative
)

type tentry struct {
	state entryState
	dest  encap.Dest
	// queue holds copies of frames in overlay form, each starting at
	// headroom so that it can be encapsulated in place.
	queue  [][]byte
	qbytes int
	// when is the start of a pending lookup, or the expiry of a
	// negative entry.
	when time.Time
}

// targetTable maps destination MACs to underlay destinations.
type targetTable struct {
	mu      sync.RWMutex
	m       map[datapath.MAC]*tentry
	pending int
}

func newTargetTable() *targetTable { return &targetTable{m: map[datapath.MAC]*tentry{}} }

// valid returns the destination of mac when the entry is valid; the
// common case, under a read lock only.
func (tt *targetTable) valid(mac datapath.MAC) (encap.Dest, bool) {
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
func (tt *targetTable) hold(mac datapath.MAC, frame []byte, now time.Time) (missResult, encap.Dest) {
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
		case statePending:
			if now.Sub(e.when) > stalePending {
				tt.pending--
				delete(tt.m, mac)
				e = nil
				break
			}
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

// set makes mac valid and returns the frames held for it.
func (tt *targetTable) set(mac datapath.MAC, dest encap.Dest) [][]byte {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	e := tt.m[mac]
	if e == nil {
		tt.m[mac] = &tentry{state: stateValid, dest: dest}
		return nil
	}
	if e.state == statePending {
		tt.pending--
	}
	q := e.queue
	*e = tentry{state: stateValid, dest: dest}
	return q
}

// drop answers mac with "drop" and returns how many held frames it
// dropped.
func (tt *targetTable) drop(mac datapath.MAC, admin bool, now time.Time) int {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	e := tt.m[mac]
	if e == nil {
		if !admin {
			return 0 // nobody asked: nothing to remember
		}
		e = &tentry{}
		tt.m[mac] = e
	}
	if e.state == statePending {
		tt.pending--
	} else if !admin && e.state != stateNegative {
		// A late "drop" does not overrule a valid or admin entry.
		return 0
	}
	n := len(e.queue)
	if admin {
		*e = tentry{state: stateAdminDrop}
	} else {
		*e = tentry{state: stateNegative, when: now.Add(negativeTTL)}
	}
	return n
}

// remove deletes mac's answer. A lookup in flight is left to finish, as
// illumos does: its frames are not the operator's to lose.
func (tt *targetTable) remove(mac datapath.MAC) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	if e := tt.m[mac]; e != nil && e.state != statePending {
		delete(tt.m, mac)
	}
}

// flush deletes every answer, leaving lookups in flight to finish.
func (tt *targetTable) flush() {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	for mac, e := range tt.m {
		if e.state != statePending {
			delete(tt.m, mac)
		}
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
		case stateValid:
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
