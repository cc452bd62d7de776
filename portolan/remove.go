package portolan

import (
	"context"
	"sync"
	"time"

	"overlaynet/portolan/store"
	"overlaynet/svpwire"
)

// A LOG_RM is answered as soon as the server has taken its ids: they
// leave the store in the background, many hosts' at once, within
// removeDelay, and until then every log read leaves them out, so no host
// is given them again. After a change every host removes its entry; a
// store transaction each (or each few, as a group commit gives when the
// removals come paced) cost the server a third of its CPU for the change
// and a goroutine woken per LOG_RM, which lookups waited behind. Should
// the server die before the store has them removed, the hosts get those
// entries again; an entry only says to forget a cached answer, so that
// does no harm.

// Tuning of the background removals.
const (
	// removeDelay gathers the removals of one transaction.
	removeDelay = 20 * time.Millisecond
	// maxRemoveBatch bounds the ids of one transaction.
	maxRemoveBatch = 20_000
	// minRemoveBackoff and maxRemoveBackoff bound the wait between
	// attempts while the store fails.
	minRemoveBackoff, maxRemoveBackoff = 100 * time.Millisecond, 5 * time.Second
)

// remover holds the ids LOG_RMs asked to remove until the store has
// removed them.
//
// A log read that began before a removal's commit may have seen the ids
// it removed, so they are kept (recent) until every read that began
// before that commit has been filtered: each read takes the commit count
// when it begins (readBegin) and leaves out the ids removed after it.
type remover struct {
	mu      sync.Mutex
	ids     map[[16]byte]struct{}
	recent  map[[16]byte]uint64 // removed by that commit (count)
	commits uint64              // removal transactions committed
	reading map[uint64]int      // log reads under way, by the count they began at
	running bool                // a goroutine writes them
	// busy is held while a transaction runs: drain waits for it.
	busy sync.Mutex
	// failing is when the store started failing, zero while it works.
	failing time.Time
}

// forget takes ids for removal: LOG_RMs, answered at once.
func (s *Server) forget(ids [][16]byte) {
	r := &s.removals
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ids == nil {
		r.ids = make(map[[16]byte]struct{})
	}
	for _, id := range ids {
		r.ids[id] = struct{}{}
	}
	if !r.running && len(r.ids) > 0 {
		r.running = true
		go s.removeLoop()
	}
}

// RemovalsPending returns how many log entries LOG_RMs removed that the
// store still has.
func (s *Server) RemovalsPending() int {
	r := &s.removals
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ids)
}

// removeLoop writes the removals to the store until none is left.
func (s *Server) removeLoop() {
	r := &s.removals
	backoff := time.Duration(0)
	for {
		time.Sleep(max(removeDelay, backoff))
		r.mu.Lock()
		if len(r.ids) == 0 {
			r.running = false
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
		if err := s.removeSome(); err != nil {
			backoff = min(max(2*backoff, minRemoveBackoff), maxRemoveBackoff)
		} else {
			backoff = 0
		}
	}
}

// removeSome removes up to maxRemoveBatch of the ids in one transaction.
func (s *Server) removeSome() error {
	r := &s.removals
	r.busy.Lock()
	defer r.busy.Unlock()
	r.mu.Lock()
	batch := make([][16]byte, 0, min(len(r.ids), maxRemoveBatch))
	for id := range r.ids {
		if len(batch) == maxRemoveBatch {
			break
		}
		batch = append(batch, id)
	}
	r.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	err := s.Store.RemoveLog(ctx, batch)
	cancel()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		if r.failing.IsZero() {
			r.failing = time.Now()
			s.logger().Error("removing log entries from the store failed; retrying (hosts are not given them meanwhile)",
				"err", err, "pending", len(r.ids))
		}
		return err
	}
	if !r.failing.IsZero() {
		s.logger().Info("log entries are removed from the store again", "outage", time.Since(r.failing).Round(time.Millisecond))
		r.failing = time.Time{}
	}
	// What no read under way may have seen is forgotten.
	oldest := r.commits
	for c := range r.reading {
		oldest = min(oldest, c)
	}
	for id, c := range r.recent {
		if c <= oldest {
			delete(r.recent, id)
		}
	}
	r.commits++
	if len(r.reading) > 0 {
		if r.recent == nil {
			r.recent = make(map[[16]byte]uint64)
		}
		for _, id := range batch {
			r.recent[id] = r.commits
		}
	}
	for _, id := range batch {
		delete(r.ids, id)
	}
	return nil
}

// readBegin registers a log read about to begin; readEnd must follow,
// with what it returned, after the read's entries were filtered.
func (s *Server) readBegin() uint64 {
	r := &s.removals
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reading == nil {
		r.reading = make(map[uint64]int)
	}
	r.reading[r.commits]++
	return r.commits
}

// readEnd ends a log read begun at since.
func (s *Server) readEnd(since uint64) {
	r := &s.removals
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reading[since]--; r.reading[since] <= 0 {
		delete(r.reading, since)
	}
}

// drainRemovals writes every pending removal, trying until ctx ends: at
// shutdown, so that none is lost.
func (s *Server) drainRemovals(ctx context.Context) {
	for s.RemovalsPending() > 0 {
		if err := s.removeSome(); err != nil {
			select {
			case <-ctx.Done():
				s.logger().Error("log entries not removed from the store at shutdown: their hosts will be given them again",
					"err", err, "pending", s.RemovalsPending())
				return
			case <-time.After(minRemoveBackoff):
			}
		}
	}
}

// unremoved returns the entries of a log read (of at most maxBytes, begun
// at since) that are not being removed nor were removed since, and
// whether the read held the whole log (any further entry would have
// fit).
func (s *Server) unremoved(entries []store.LogEntry, maxBytes int, since uint64) ([]store.LogEntry, bool) {
	total := 0
	for _, e := range entries {
		total += e.Size()
	}
	whole := maxBytes-total >= svpwire.LogVL3Size
	r := &s.removals
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.ids) == 0 && r.commits == since {
		return entries, whole
	}
	kept := entries[:0:0]
	for _, e := range entries {
		_, pending := r.ids[e.ID]
		if c, ok := r.recent[e.ID]; !pending && (!ok || c <= since) {
			kept = append(kept, e)
		}
	}
	return kept, whole
}
