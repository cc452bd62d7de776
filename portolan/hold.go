package portolan

import (
	"container/heap"
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"overlaynet/portolan/store"
	"overlaynet/svpwire"
)

// Held LOG_REQs wait in a registry, not in a goroutine each. A change
// that logs an entry for every host of a vnetid wakes all of their held
// requests at once; with a goroutine each, 10,000 goroutines became
// runnable together and lookups, which wait for a thread behind them,
// took hundreds of milliseconds. Here one goroutine, the deliverer, reads
// the woken hosts' logs in batches and writes the replies, so a change
// keeps at most one thread busy and the lookups have the others.

// signalReporter is the optional capability of Lookups to report the log
// signals it closes (the index does): then no goroutine waits on each
// held LOG_REQ's signal.
type signalReporter interface {
	// OnLogSignals sets fn, called with the log signals each time some
	// are closed, once they are. fn must not block.
	OnLogSignals(fn func(closed []<-chan struct{}))
}

// held is one LOG_REQ being held.
type held struct {
	cn       *conn
	req      request
	m        svpwire.LogReq
	sig      <-chan struct{} // the host's log signal taken before the log was read empty
	deadline time.Time
	idx      int           // in holds.timeouts; -1 once out
	gone     chan struct{} // closed when it leaves the registry, without signalReporter
}

// Connection states, as the registry sees them (holds.mu guards them).
const (
	connOpen     = iota
	connReleased // closed cleanly by the client: its holds are answered at once
	connDropped  // failed or closing: its holds are dropped unanswered
)

// holds is the registry of held LOG_REQs and its deliverer.
type holds struct {
	s    *Server
	once sync.Once

	mu       sync.Mutex
	bySig    map[<-chan struct{}][]*held
	timeouts heldHeap
	ready    []*held // out of the registry, to be answered
	running  bool    // a deliverer goroutine runs
	wake     chan struct{}
	watch    bool // no signalReporter: a goroutine waits on each signal

	// The deliverer's window: trips counts the hosts answered by it that
	// have not sent their next LOG_RM or LOG_REQ yet (within
	// tripTimeout); while maxTrips are out it waits. This bounds the
	// requests that a change brings in at once, which every lookup
	// arriving meanwhile would wait behind.
	trips    atomic.Int64
	tripWake chan struct{}
	tripq    []tripRec // the trips opened, oldest first
}

// The deliverer's window (see holds.trips). A host that does not answer
// within tripTimeout stops counting: an illumos client asks again on its
// own timer, and when every CPU is busy (lookups alone can keep them so)
// answers come late and the window would only slow the change down, so
// at worst it lets maxTrips through every tripTimeout (8,000 hosts a
// second). Measured with 10,000 hosts (overlaybench scale): at 5,000
// lookups a second with changes reaching every host, lookup p99 was
// 56 ms with no window, 11 ms with 64, 5-8 ms with 16; 8 and 4 did no
// better.
const (
	maxTrips    = 16
	tripTimeout = 2 * time.Millisecond
)

// tripRec is a trip the deliverer opened: the connection and its
// conn.trip stamp.
type tripRec struct {
	cn    *conn
	stamp int64
}

func (hs *holds) init(s *Server) {
	hs.once.Do(func() {
		hs.s = s
		hs.bySig = map[<-chan struct{}][]*held{}
		hs.wake = make(chan struct{}, 1)
		hs.tripWake = make(chan struct{}, 1)
		if r, ok := s.Lookups.(signalReporter); ok {
			r.OnLogSignals(hs.signalled)
		} else {
			hs.watch = true
		}
	})
}

// hold registers a LOG_REQ that found the log of m.IP empty, read after
// sig was taken. It is answered when sig closes, when LogHold passes or
// when the client closes its side, whichever comes first. The caller has
// counted it in cn.held.
func (hs *holds) hold(cn *conn, req request, m svpwire.LogReq, sig <-chan struct{}) {
	hs.init(cn.s)
	h := &held{cn: cn, req: req, m: m, sig: sig, deadline: time.Now().Add(cn.s.LogHold), idx: -1}
	cn.tasks.Add(1) // done once answered or dropped
	hs.mu.Lock()
	defer hs.mu.Unlock()
	switch cn.holdState {
	case connDropped:
		hs.finish(h)
		return
	case connReleased:
		hs.toReady(h)
		return
	}
	// A signal closed before this check is seen here; one closed after
	// it is reported after this registration (signalled takes hs.mu).
	select {
	case <-sig:
		hs.toReady(h)
		return
	default:
	}
	hs.bySig[sig] = append(hs.bySig[sig], h)
	heap.Push(&hs.timeouts, h)
	cn.holding = append(cn.holding, h)
	if hs.watch {
		h.gone = make(chan struct{})
		go func() {
			select {
			case <-sig:
				hs.signalled([]<-chan struct{}{sig})
			case <-h.gone:
			}
		}()
	}
	hs.start()
}

// signalled takes the LOG_REQs held on closed signals out of the
// registry, to be answered.
func (hs *holds) signalled(closed []<-chan struct{}) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	n := len(hs.ready)
	for _, sig := range closed {
		// A copy: unregister edits the list.
		for _, h := range slices.Clone(hs.bySig[sig]) {
			hs.unregister(h)
			hs.ready = append(hs.ready, h)
		}
	}
	if len(hs.ready) > n {
		hs.start()
	}
}

// release answers a connection's held LOG_REQs at once: its client closed
// its side cleanly. Those it holds later are answered at once too.
func (hs *holds) release(cn *conn) {
	hs.init(cn.s)
	hs.mu.Lock()
	defer hs.mu.Unlock()
	cn.holdState = connReleased
	if len(cn.holding) == 0 {
		return
	}
	for _, h := range slices.Clone(cn.holding) {
		hs.unregister(h)
		hs.ready = append(hs.ready, h)
	}
	hs.start()
}

// drop forgets a failed connection's held LOG_REQs; those it holds later
// are dropped too.
func (hs *holds) drop(cn *conn) {
	hs.init(cn.s)
	hs.mu.Lock()
	defer hs.mu.Unlock()
	cn.holdState = connDropped
	for _, h := range slices.Clone(cn.holding) {
		hs.unregister(h)
		hs.finish(h)
	}
}

// unregister takes h out of bySig, the timeouts and its connection's
// list. hs.mu is held.
func (hs *holds) unregister(h *held) {
	if i := h.idx; i >= 0 {
		heap.Remove(&hs.timeouts, i)
	}
	list := hs.bySig[h.sig]
	for i, x := range list {
		if x == h {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(hs.bySig, h.sig)
	} else {
		hs.bySig[h.sig] = list
	}
	cl := h.cn.holding
	for i, x := range cl {
		if x == h {
			h.cn.holding = append(cl[:i], cl[i+1:]...)
			break
		}
	}
	if h.gone != nil {
		close(h.gone)
	}
}

// toReady queues h, registered or not, to be answered. hs.mu is held.
func (hs *holds) toReady(h *held) {
	hs.ready = append(hs.ready, h)
	hs.start()
}

// finish ends h's part in its connection's tasks.
func (hs *holds) finish(h *held) {
	h.cn.held.Add(-1)
	h.cn.tasks.Done()
}

// start wakes the deliverer, starting it if none runs. hs.mu is held.
func (hs *holds) start() {
	if !hs.running {
		hs.running = true
		go hs.deliverer()
		return
	}
	select {
	case hs.wake <- struct{}{}:
	default:
	}
}

// deliverer answers what is ready and what times out, until nothing is
// held.
func (hs *holds) deliverer() {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		hs.mu.Lock()
		now := time.Now()
		for len(hs.timeouts) > 0 && !hs.timeouts[0].deadline.After(now) {
			h := hs.timeouts[0]
			hs.unregister(h)
			hs.ready = append(hs.ready, h)
		}
		batch := hs.ready
		hs.ready = nil
		if len(batch) == 0 {
			if len(hs.timeouts) == 0 {
				hs.running = false
				hs.mu.Unlock()
				return
			}
			t.Reset(hs.timeouts[0].deadline.Sub(now))
			hs.mu.Unlock()
			select {
			case <-hs.wake:
			case <-t.C:
			}
			continue
		}
		hs.mu.Unlock()
		hs.answer(batch)
	}
}

// answer answers held LOG_REQs: empty without a query when the log is
// known to be still empty, otherwise from the store, maxReadBatch logs a
// query.
func (hs *holds) answer(batch []*held) {
	s := hs.s
	var reads []*held
	for _, h := range batch {
		cn := h.cn
		switch {
		case cn.ctx.Err() != nil:
		case cn.knownEmpty(h.m.IP, h.sig):
			// Nothing appended while held: empty, without a query.
			hs.deliver(cn, cn.logAck(h.req.id, h.m, nil, nil), h.req.counted)
		default:
			reads = append(reads, h)
			continue
		}
		hs.finish(h)
	}
	for len(reads) > 0 {
		chunk := reads[:min(len(reads), maxReadBatch)]
		reads = reads[len(chunk):]
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		// Each host's signal before the read: an append after it closes
		// the signal, so a log read empty is known empty until then.
		sigs := make([]<-chan struct{}, len(chunk))
		lr := make([]store.LogRead, len(chunk))
		for i, h := range chunk {
			sigs[i] = s.Lookups.LogSignal(h.m.IP)
			lr[i] = store.LogRead{IP: h.m.IP, MaxBytes: min(int(h.m.Count), maxLogBytes)}
		}
		since := s.readBegin()
		s.readLogs(ctx, lr)
		cancel()
		for i, h := range chunk {
			if lr[i].Err == nil {
				var whole bool
				lr[i].Entries, whole = s.unremoved(lr[i].Entries, lr[i].MaxBytes, since)
				h.cn.noteRead(h.m, sigs[i], lr[i].Entries, whole)
			}
		}
		s.readEnd(since)
		for i, h := range chunk {
			hs.deliver(h.cn, h.cn.logAck(h.req.id, h.m, lr[i].Entries, lr[i].Err), h.req.counted)
			hs.finish(h)
		}
	}
}

// deliver sends a held LOG_REQ's answer, once the window has room, and
// opens a trip for its connection.
func (hs *holds) deliver(cn *conn, b []byte, counted bool) {
	hs.waitWindow()
	stamp := time.Now().UnixNano()
	if cn.trip.Swap(stamp) == 0 {
		hs.trips.Add(1)
	}
	hs.tripq = append(hs.tripq, tripRec{cn, stamp})
	cn.send(b, counted)
}

// endTrip ends cn's trip, if it has one: its client sent a LOG_REQ or a
// LOG_RM, or the connection ended.
func (hs *holds) endTrip(cn *conn) {
	if cn.trip.Load() == 0 || cn.trip.Swap(0) == 0 {
		return
	}
	if hs.trips.Add(-1) < maxTrips {
		select {
		case hs.tripWake <- struct{}{}:
		default:
		}
	}
}

// waitWindow waits until fewer than maxTrips are out, forgetting those
// older than tripTimeout.
func (hs *holds) waitWindow() {
	var t *time.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for {
		now := time.Now()
		q := hs.tripq
		for len(q) > 0 {
			r := q[0]
			if st := r.cn.trip.Load(); st == r.stamp {
				if now.Sub(time.Unix(0, st)) < tripTimeout {
					break
				}
				if r.cn.trip.CompareAndSwap(st, 0) {
					hs.trips.Add(-1)
				}
			}
			q[0] = tripRec{}
			q = q[1:]
		}
		if len(q) == 0 {
			q = hs.tripq[:0]
		}
		hs.tripq = q
		// An empty queue with trips counted: their ends are being
		// counted down (endTrip) right now.
		if hs.trips.Load() < maxTrips || len(q) == 0 {
			return
		}
		wait := tripTimeout - now.Sub(time.Unix(0, q[0].stamp))
		if t == nil {
			t = time.NewTimer(wait)
		} else {
			t.Reset(wait)
		}
		select {
		case <-hs.tripWake:
		case <-t.C:
		}
	}
}

// heldHeap orders held LOG_REQs by deadline.
type heldHeap []*held

func (q heldHeap) Len() int           { return len(q) }
func (q heldHeap) Less(i, j int) bool { return q[i].deadline.Before(q[j].deadline) }
func (q heldHeap) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].idx, q[j].idx = i, j
}
func (q *heldHeap) Push(x any) {
	h := x.(*held)
	h.idx = len(*q)
	*q = append(*q, h)
}
func (q *heldHeap) Pop() any {
	old := *q
	h := old[len(old)-1]
	old[len(old)-1] = nil
	h.idx = -1
	*q = old[:len(old)-1]
	return h
}

// count returns how many LOG_REQs are registered.
func (hs *holds) count() int {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return len(hs.timeouts)
}
