package index

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"overlaynet/portolan/store"
)

// Follow keeps the index current until ctx ends, then returns ctx's
// error. It applies the store's changes whenever Watch signals and at
// least every second. A failing store (PostgreSQL down) never stops it:
// updates are retried with backoff, the outage is logged once when it
// begins and once when it ends, Status reports it meanwhile, and the
// lookups answer from the last state read.
func (ix *Index) Follow(ctx context.Context) error {
	wake := ix.feed.Watch(ctx)
	tick := time.NewTicker(ix.tick)
	defer tick.Stop()
	backoff := time.Duration(0)
	for {
		err := ix.Update(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		ix.noteErr(err)
		if err != nil {
			backoff = min(max(2*backoff, ix.minBackoff), ix.maxBackoff)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
			continue
		}
		backoff = 0
		select {
		case <-ctx.Done():
			return ctx.Err()
		case _, ok := <-wake:
			if !ok {
				// The feed closed its watch (the store was closed):
				// the tick alone paces the updates from here on.
				wake = nil
			}
		case <-tick.C:
		}
	}
}

// noteErr records the outcome of an update, logging when an outage
// begins and when it ends.
func (ix *Index) noteErr(err error) {
	ix.statMu.Lock()
	defer ix.statMu.Unlock()
	switch {
	case err != nil && ix.lastErr == nil:
		ix.errSince = time.Now()
		ix.log.Error("index: reading the store's changes failed; answering from the last state read, retrying",
			"err", err, "seq", ix.Seq())
	case err == nil && ix.lastErr != nil:
		ix.log.Info("index: the store's changes are read again", "outage", time.Since(ix.errSince).Round(time.Millisecond),
			"failures", ix.failures, "seq", ix.Seq())
		ix.errSince = time.Time{}
	}
	if err != nil {
		ix.failures++
	}
	ix.lastErr = err
}

// Update applies every change committed after the index's sequence
// number, reloading everything when the feed says so (ChangeReload) or
// has pruned changes it would need (ErrChangesPruned), and returns the
// first error of the store. After an error the index is as it was, or
// partly updated (never wrong for longer than the next successful
// Update: changes are re-applied from the last sequence number fully
// applied).
func (ix *Index) Update(ctx context.Context) error {
	if ix.feed == nil {
		return errors.New("index: no store to follow (a dump)")
	}
	ix.upd.Lock()
	defer ix.upd.Unlock()
	for {
		cs, err := ix.feed.Changes(ctx, ix.Seq(), changesLimit)
		if errors.Is(err, store.ErrChangesPruned) {
			if err := ix.reload(ctx); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("index: changes after %d: %w", ix.Seq(), err)
		}
		if len(cs) == 0 {
			return nil
		}
		if hasReload(cs) {
			// What comes before the reload is read again by it.
			if err := ix.reload(ctx); err != nil {
				return err
			}
			continue
		}
		if err := ix.apply(ctx, cs); err != nil {
			return err
		}
	}
}

func hasReload(cs []store.Change) bool {
	return slices.ContainsFunc(cs, func(c store.Change) bool { return c.Kind == store.ChangeReload })
}

// reload reads everything again and swaps it in, waking every log
// waiter (the reload may stand for log changes not seen).
func (ix *Index) reload(ctx context.Context) error {
	ix.mu.RLock()
	n2, n4, n6 := ix.st.vl2.len(), ix.st.vl4.len(), ix.st.vl6.len()
	ix.mu.RUnlock()
	st, seq, err := ix.load(ctx, n2, n4, n6)
	if err != nil {
		return err
	}
	ix.mu.Lock()
	old := ix.st
	ix.st, ix.seq = st, seq
	ix.mu.Unlock()
	old.wakeAll()
	ix.report(old.takeClosed())
	ix.statMu.Lock()
	ix.reloads++
	ix.statMu.Unlock()
	ix.log.Info("index: reloaded the store", "seq", seq, "hosts", len(st.byIP), "vl2", st.vl2.len(), "vl3", st.vl4.len()+st.vl6.len())
	return nil
}

// apply applies a batch of changes (none a reload) and advances the
// sequence number past them. Every re-read happens after the batch was
// fetched, so it gives a state no older than any change of the batch:
// each thing named is re-read once, whatever the order.
func (ix *Index) apply(ctx context.Context, cs []store.Change) error {
	hosts := false
	vnics := map[vl2Key]struct{}{}
	type ipKey struct {
		vnet uint32
		ip   netip.Addr
	}
	ips := map[ipKey]struct{}{}
	logs := map[string]struct{}{}
	for _, c := range cs {
		switch c.Kind {
		case store.ChangeHost:
			hosts = true
		case store.ChangeVNIC:
			vnics[vl2Key{c.VNetID, c.MAC}] = struct{}{}
		case store.ChangeIP:
			ips[ipKey{c.VNetID, c.IP.Unmap()}] = struct{}{}
		case store.ChangeLog:
			logs[c.Host] = struct{}{}
		}
	}
	if hosts {
		if err := ix.rereadHosts(ctx); err != nil {
			return err
		}
	}
	for k := range vnics {
		h, ok, err := ix.feed.VL2(ctx, k.vnet, k.mac)
		if err != nil {
			return fmt.Errorf("index: re-reading VL2 %d %s: %w", k.vnet, macString(k.mac), err)
		}
		if ix.setVL2(k, h, ok, false) {
			continue
		}
		// A host the index does not know as the store answered:
		// changes to come name it; read the hosts now to answer at once.
		if err := ix.rereadHosts(ctx); err != nil {
			return err
		}
		ix.setVL2(k, h, ok, true)
	}
	for k := range ips {
		mac, _, ok, err := ix.feed.VL3(ctx, k.vnet, k.ip)
		if err != nil {
			return fmt.Errorf("index: re-reading VL3 %d %s: %w", k.vnet, k.ip, err)
		}
		ix.mu.Lock()
		ix.st.setVL3(k.vnet, k.ip, mac, ok)
		ix.mu.Unlock()
	}
	// The signals are swapped under the lock and closed after it: a
	// change that logs for 10,000 hosts wakes 10,000 held LOG_REQs, and
	// lookups, which take the read lock, must not wait for that.
	old := make([]chan struct{}, 0, len(logs))
	ix.mu.Lock()
	for id := range logs {
		if i, ok := ix.st.byID[id]; ok {
			sl := &ix.st.hosts[i]
			old = append(old, sl.sig)
			sl.sig = make(chan struct{})
		}
	}
	ix.seq = cs[len(cs)-1].Seq
	ix.mu.Unlock()
	closed := make([]<-chan struct{}, len(old))
	for i, c := range old {
		close(c)
		closed[i] = c
	}
	ix.report(closed)
	return nil
}

// setVL2 sets (ok) or deletes a VL2 mapping. It reports false, changing
// nothing, when the store's host is not the index's live host of that ID
// and force is unset; with force it then points the mapping at the slot
// of that ID anyway (deletes it for an unknown ID).
func (ix *Index) setVL2(k vl2Key, h store.Host, ok, force bool) bool {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	st := ix.st
	if !ok {
		st.vl2.delete(pk2(k))
		return true
	}
	i, known := st.byID[h.ID]
	if known && st.hosts[i].alive && st.hosts[i].h == h {
		st.vl2.set(pk2(k), ref(i))
		return true
	}
	if !force {
		return false
	}
	if known {
		st.vl2.set(pk2(k), ref(i))
	} else {
		st.vl2.delete(pk2(k))
	}
	return true
}

// rereadHosts reads the hosts and their source addresses again.
func (ix *Index) rereadHosts(ctx context.Context) error {
	hosts, err := ix.feed.Hosts(ctx)
	if err != nil {
		return fmt.Errorf("index: re-reading hosts: %w", err)
	}
	srcs, err := ix.feed.Sources(ctx)
	if err != nil {
		return fmt.Errorf("index: re-reading source addresses: %w", err)
	}
	ix.mu.Lock()
	ix.st.setHosts(hosts, srcs)
	closed := ix.st.takeClosed()
	ix.mu.Unlock()
	ix.report(closed)
	return nil
}
