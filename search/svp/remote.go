package svp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"

	"overlaynet/ether"
	"overlaynet/proxy"
	proto "overlaynet/svp"
)

// Timing of a remote.
const (
	resolveInterval = 30 * time.Second // re-resolve svp/host, as illumos
	// requestTimeout bounds one attempt on one connection; a lookup
	// retries on another server after it, within the lookup's deadline.
	requestTimeout = 1500 * time.Millisecond
	// pollInterval is how often the log is polled when it was empty
	// (illumos: 5-10 s). Changes such as a migration reach hosts within
	// it; a non-empty log is polled again at once.
	pollInterval = 500 * time.Millisecond
	// logCount is how many bytes of log entries one LOG_REQ asks for.
	logCount = 16 << 10
)

// remoteKey identifies a mapping service as seen from this host. Overlays
// with the same key share one remote, hence one log poller: a host's log
// holds entries for all its overlays, and two pollers would remove each
// other's entries.
type remoteKey struct {
	host     string
	port     uint16
	underlay netip.Addr
}

var (
	remotesMu sync.Mutex
	remotes   = map[remoteKey]*remote{}
)

// remote is the mapping service at svp/host:svp/port: one connection per
// address the host name resolves to, and the poller of this host's log.
type remote struct {
	key remoteKey
	log *slog.Logger

	mu        sync.Mutex
	conns     map[netip.AddrPort]*conn
	rr        int
	instances map[uint32]*instance // by vnetid
	refs      int
	dnsErr    error
	logErr    string
	degraded  string // the reason last reported, "" when online
	change    chan struct{}
	stopped   chan struct{}
	notifyMu  sync.Mutex
	wg        sync.WaitGroup
}

// acquire returns the shared remote for key with inst registered.
func acquire(key remoteKey, inst *instance) (*remote, error) {
	remotesMu.Lock()
	defer remotesMu.Unlock()
	r := remotes[key]
	if r == nil {
		r = &remote{key: key, log: inst.log, conns: map[netip.AddrPort]*conn{},
			instances: map[uint32]*instance{}, change: make(chan struct{}), stopped: make(chan struct{})}
		remotes[key] = r
		r.wg.Add(2)
		go r.resolveLoop()
		go r.pollLoop()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if other := r.instances[inst.vnetid]; other != nil {
		return nil, fmt.Errorf("another overlay already uses vnetid %d with mapping server %s:%d", inst.vnetid, key.host, key.port)
	}
	r.instances[inst.vnetid] = inst
	r.refs++
	return r, nil
}

// release unregisters inst; the last one stops the remote.
func (r *remote) release(inst *instance) {
	remotesMu.Lock()
	r.mu.Lock()
	delete(r.instances, inst.vnetid)
	r.refs--
	last := r.refs == 0
	if last {
		delete(remotes, r.key)
	}
	r.mu.Unlock()
	remotesMu.Unlock()
	if !last {
		return
	}
	close(r.stopped)
	r.mu.Lock()
	for _, c := range r.conns {
		c.close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// resolveLoop keeps one connection per address of svp/host.
func (r *remote) resolveLoop() {
	defer r.wg.Done()
	for {
		r.resolve()
		select {
		case <-r.stopped:
			return
		case <-time.After(resolveInterval):
		}
	}
}

func (r *remote) resolve() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", r.key.host)
	cancel()
	r.mu.Lock()
	select {
	case <-r.stopped:
		r.mu.Unlock()
		return // released meanwhile: make no new connections
	default:
	}
	if err != nil {
		r.dnsErr = err
		r.mu.Unlock()
		r.stateChanged()
		return
	}
	r.dnsErr = nil
	want := map[netip.AddrPort]bool{}
	for _, a := range addrs {
		want[netip.AddrPortFrom(a.Unmap(), r.key.port)] = true
	}
	for a, c := range r.conns {
		if !want[a] {
			c.close() // gone from DNS: wind it down
			delete(r.conns, a)
		}
	}
	for a := range want {
		if r.conns[a] == nil {
			r.conns[a] = newConn(r, a)
		}
	}
	r.mu.Unlock()
	r.stateChanged()
}

// stateChanged re-evaluates whether the remote can do its job and tells
// the instances, and wakes callers waiting for a connection.
func (r *remote) stateChanged() {
	// One evaluation and its notifications at a time, so that a
	// Degrade and a Restore cannot overtake each other.
	r.notifyMu.Lock()
	defer r.notifyMu.Unlock()
	r.mu.Lock()
	reason := r.reasonLocked()
	changed := reason != r.degraded
	r.degraded = reason
	insts := r.instanceList()
	close(r.change)
	r.change = make(chan struct{})
	r.mu.Unlock()
	if !changed {
		return
	}
	for _, in := range insts {
		if reason == "" {
			in.host.Restore()
		} else {
			in.host.Degrade(reason)
		}
	}
}

// reasonLocked says why the remote is degraded, "" if it is not.
func (r *remote) reasonLocked() string {
	target := fmt.Sprintf("svp/host %s port %d", r.key.host, r.key.port)
	if r.dnsErr != nil && len(r.conns) == 0 {
		return fmt.Sprintf("cannot resolve %s: %v", target, r.dnsErr)
	}
	var lastErr error
	tried := false
	for _, c := range r.conns {
		c.mu.Lock()
		up, attempts, err := c.c != nil, c.attempts, c.lastErr
		c.mu.Unlock()
		if up {
			if r.logErr != "" {
				return r.logErr
			}
			return ""
		}
		if attempts > 0 {
			tried = true
			lastErr = err
		}
	}
	if !tried {
		return "" // still connecting for the first time
	}
	return fmt.Sprintf("cannot reach any mapping server (%s): %v", target, lastErr)
}

func (r *remote) instanceList() []*instance {
	out := make([]*instance, 0, len(r.instances))
	for _, in := range r.instances {
		out = append(out, in)
	}
	return out
}

// call sends a request to some server, retrying on others (and waiting
// for one to come up) until ctx ends.
func (r *remote) call(ctx context.Context, build func(dst []byte, id uint32) []byte, want proto.Op) ([]byte, error) {
	var lastErr error = errConnDown
	tried := map[*conn]bool{}
	for {
		c, wait := r.pick(tried)
		if c == nil {
			var pause <-chan time.Time
			if len(tried) > 0 {
				// Every server failed once: start over after a pause.
				tried = map[*conn]bool{}
				pause = time.After(100 * time.Millisecond)
			}
			select {
			case <-wait:
				continue
			case <-pause:
				continue
			case <-r.stopped:
				return nil, errors.New("the svp plugin was stopped")
			case <-ctx.Done():
				return nil, fmt.Errorf("%w (last error: %v)", ctx.Err(), lastErr)
			}
		}
		actx, cancel := context.WithTimeout(ctx, requestTimeout)
		body, err := c.call(actx, build, want)
		cancel()
		if err == nil {
			return body, nil
		}
		lastErr = err
		tried[c] = true
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			// No answer in time: treat the connection as wedged.
			r.log.Warn("svp: request timed out; reconnecting", "server", c.addr.String())
			c.mu.Lock()
			if c.c != nil {
				c.c.Close()
			}
			c.mu.Unlock()
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w (last error: %v)", ctx.Err(), lastErr)
		}
	}
}

// pick returns the next established connection not in skip, round robin,
// or nil and a channel closed at the next state change.
func (r *remote) pick(skip map[*conn]bool) (*conn, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	addrs := make([]netip.AddrPort, 0, len(r.conns))
	for a := range r.conns {
		addrs = append(addrs, a)
	}
	sort.Slice(addrs, func(i, j int) bool { return addrs[i].Compare(addrs[j]) < 0 })
	for i := range addrs {
		c := r.conns[addrs[(r.rr+i)%len(addrs)]]
		if !skip[c] && c.up() {
			r.rr = (r.rr + i + 1) % len(addrs)
			return c, nil
		}
	}
	return nil, r.change
}

// pollLoop fetches this host's log, applies it and removes what it
// applied, for as long as the remote lives.
func (r *remote) pollLoop() {
	defer r.wg.Done()
	for {
		more, err := r.pollOnce()
		r.setLogErr(err)
		wait := pollInterval
		if more {
			wait = 0
		}
		select {
		case <-r.stopped:
			return
		case <-time.After(wait):
		}
	}
}

// logError is a log failure worth degrading the overlays for.
type logError struct{ msg string }

func (e *logError) Error() string { return e.msg }

func (r *remote) setLogErr(err error) {
	var le *logError
	msg := ""
	if errors.As(err, &le) {
		msg = le.msg
	}
	r.mu.Lock()
	changed := msg != r.logErr
	r.logErr = msg
	r.mu.Unlock()
	if changed {
		r.stateChanged()
	}
}

// pollOnce does one LOG_REQ / apply / LOG_RM round and reports whether
// entries came (so there may be more).
func (r *remote) pollOnce() (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	body, err := r.call(ctx, proto.LogReq{Count: logCount, IP: r.key.underlay}.AppendFrame, proto.OpLogAck)
	if err != nil {
		return false, err
	}
	ack, err := proto.DecodeLogAck(body)
	if err != nil {
		return false, err
	}
	if ack.Status != proto.StatusOK {
		return false, &logError{fmt.Sprintf("the mapping server refuses this host's log (%s): is svp/underlay_ip %s registered with it (portolan add-host), "+
			"and does this host reach it from that address or from one registered as the host's (portolan add-host --source; the server gives a host's log only to its own addresses)?",
			ack.Status, r.key.underlay)}
	}
	if size := len(body) - 4; size > logCount {
		return false, fmt.Errorf("LOG_ACK carries %d bytes of entries, more than the %d asked for", size, logCount)
	}
	if len(ack.Entries) == 0 {
		return false, nil
	}
	ids := make([][16]byte, 0, len(ack.Entries))
	for _, e := range ack.Entries {
		if r.apply(ctx, e) {
			ids = append(ids, e.ID)
		}
	}
	applied := len(ids) > 0
	for len(ids) > 0 {
		n := min(len(ids), 1000)
		body, err := r.call(ctx, proto.LogRm{IDs: ids[:n]}.AppendFrame, proto.OpLogRmAck)
		if err != nil {
			return false, err
		}
		if ack, err := proto.DecodeLogRmAck(body); err != nil || ack.Status != proto.StatusOK {
			return false, fmt.Errorf("LOG_RM refused: %v %v", ack.Status, err)
		}
		ids = ids[n:]
	}
	// Nothing applied (entries to retry later): wait as if it were empty.
	return applied, nil
}

// apply acts on one log entry and reports whether it is done (and may be
// removed from the server's log).
func (r *remote) apply(ctx context.Context, e proto.LogEntry) bool {
	r.mu.Lock()
	in := r.instances[e.VNetID]
	r.mu.Unlock()
	if in == nil {
		return true // no overlay here for that network: nothing cached
	}
	switch e.Type {
	case proto.LogVL2:
		in.host.Invalidate(ether.MAC(e.MAC))
		in.log.Debug("svp: log: forget MAC", "mac", ether.Short(e.MAC[:]))
		return true
	case proto.LogVL3:
		// Tell local guests where the address is now, as illumos does with
		// a gratuitous ARP (and, which illumos never did, an unsolicited
		// neighbour advertisement for IPv6).
		mac, dest, err := in.vl3(ctx, e.IP)
		if errors.Is(err, errNotFound) {
			return true
		}
		if err != nil {
			return false // retried on the next poll
		}
		in.host.SetTarget(mac, dest)
		if e.IP.Is4() {
			in.host.Inject(e.VLAN, proxy.GratuitousARP(mac, e.IP))
		} else {
			in.host.Inject(e.VLAN, proxy.UnsolicitedAdvertisement(mac, e.IP))
		}
		return true
	}
	return true
}

// shootdown honours a SHOOTDOWN message.
func (r *remote) shootdown(vnetid uint32, mac [6]byte) {
	r.mu.Lock()
	in := r.instances[vnetid]
	r.mu.Unlock()
	if in != nil {
		in.host.Invalidate(ether.MAC(mac))
	}
}
