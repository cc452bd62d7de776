package svp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"overlaynet/ether"
	"overlaynet/search"
	"overlaynet/svpwire"
)

// timings of a remote and its connections. Tests shrink them.
type timings struct {
	resolve time.Duration // re-resolve svp/host, as illumos
	// attempt bounds one attempt on one connection before the request
	// is also sent on another; the first attempt stays outstanding.
	attempt time.Duration
	// stallAfter: a connection that has answered nothing for this long
	// while requests are outstanding makes the overlay DEGRADED.
	stallAfter time.Duration
	// giveUp: a connection that has made no progress for this long with
	// requests outstanding is closed (illumos: 30 s). Not sooner: a slow
	// server then writes its answers into a closed socket, and Triton's
	// portolan dies of that (EPIPE).
	giveUp time.Duration
	tick   time.Duration // how often stalls are checked
	// logDelay is the wait before the first LOG_REQ (illumos: 5-10 s),
	// and the first step of the backoff for a server that closes the
	// connection on LOG_REQ; logBackoffMax caps that backoff.
	logDelay      time.Duration
	logBackoffMax time.Duration
	// pollInterval is the pause after an empty LOG_ACK that came back
	// within it (a server that answers at once: Triton's, or ours with
	// holding off). After one that took longer (held: a long poll) or
	// one with entries, the next LOG_REQ goes out at once; either way
	// the log is asked at most about once per pollInterval while empty.
	pollInterval time.Duration
	// logHold is the longest a sane server holds a LOG_REQ that finds
	// the log empty (our portolan's default: 5 s, well inside illumos'
	// 30 s no-progress limit). A held LOG_REQ counts as waiting for
	// nothing (no stall, no DEGRADED, no giveUp) until logCall.
	logHold time.Duration
	// logCall bounds one LOG_REQ, and then the apply / LOG_RM that
	// follows. It is at least logHold + attempt (see check), so that a
	// held LOG_REQ is answered before its caller gives up on it; a
	// LOG_REQ unanswered after it is owed like any request.
	logCall     time.Duration
	dialTimeout time.Duration
	// backoff after failed connects: minBackoff doubling to maxBackoff.
	// A restarted server is found again within that (illumos: 1-32 s).
	minBackoff, maxBackoff time.Duration
}

// DefaultLogDelay is the default wait before the first LOG_REQ to a
// mapping server (overlayd --svp-log-delay). illumos waits 5-10 s, with a
// 5-10 s poll interval after. Here what protects a server without a log
// (Triton's json store dies of a LOG_REQ) is the backoff after each
// close on LOG_REQ, from this delay doubling up to minutes; the delay
// only lets a starting host's first lookups (answered in milliseconds)
// go before the server first meets a LOG_REQ. 2 s does that, and keeps a
// change made while a host starts (a VNIC moved at boot) applied within
// about 2 s, as the tests and overlaybench migrate expect of the 0.5 s
// poll. Give more for a server known to lack the log.
const DefaultLogDelay = 2 * time.Second

// serverLogHold is the default of portolan serve's hold of a LOG_REQ
// that finds the log empty (5 s), and the longest hold this plugin
// assumes of any server; it is well inside the illumos client's 30 s
// no-progress limit.
const serverLogHold = 5 * time.Second

var defaultTimings = timings{
	resolve:       30 * time.Second,
	attempt:       1500 * time.Millisecond,
	stallAfter:    3 * time.Second,
	giveUp:        30 * time.Second,
	tick:          500 * time.Millisecond,
	logDelay:      DefaultLogDelay,
	logBackoffMax: 5 * time.Minute,
	pollInterval:  500 * time.Millisecond,
	logHold:       serverLogHold,
	logCall:       serverLogHold + 2*time.Second, // the answer's way back, a loaded server
	dialTimeout:   3 * time.Second,
	minBackoff:    100 * time.Millisecond,
	maxBackoff:    4 * time.Second,
}

// check reports timings whose relations the log poll relies on broken.
func (t timings) check() error {
	if t.logCall < t.logHold+t.attempt {
		return fmt.Errorf("logCall %v < logHold %v + attempt %v: a held LOG_REQ would be given up on", t.logCall, t.logHold, t.attempt)
	}
	if t.logHold >= t.giveUp {
		return fmt.Errorf("logHold %v >= giveUp %v: a sane hold ends well before a connection is given up on", t.logHold, t.giveUp)
	}
	return nil
}

var (
	timingsMu sync.Mutex
	current   = defaultTimings
)

// SetLogDelay sets the wait before the first LOG_REQ of remotes started
// from now on (overlayd --svp-log-delay). It is also the first step of
// the backoff for a server that closes the connection on LOG_REQ.
func SetLogDelay(d time.Duration) error {
	if d < 0 || d > defaultTimings.logBackoffMax {
		return fmt.Errorf("svp log delay %v: want 0 to %v", d, defaultTimings.logBackoffMax)
	}
	timingsMu.Lock()
	current.logDelay = d
	timingsMu.Unlock()
	return nil
}

// logCount is how many bytes of log entries one LOG_REQ asks for.
const logCount = 16 << 10

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
	t   timings

	mu        sync.Mutex
	conns     map[netip.AddrPort]*conn
	rr        int
	instances map[uint32]*instance // by vnetid
	refs      int
	dnsErr    error
	logErr    string
	// logClosures counts the LOG_REQs in a row whose connection the
	// server closed (logClosedBy); logWait is the poll backoff they set.
	logClosures int
	logClosedBy netip.AddrPort
	logWait     time.Duration
	degraded    string // the reason last reported, "" when online
	change      chan struct{}
	stopped     chan struct{}
	notifyMu    sync.Mutex
	wg          sync.WaitGroup
}

// acquire returns the shared remote for key with inst registered.
func acquire(key remoteKey, inst *instance) (*remote, error) {
	remotesMu.Lock()
	defer remotesMu.Unlock()
	r := remotes[key]
	if r == nil {
		timingsMu.Lock()
		t := current
		timingsMu.Unlock()
		r = &remote{key: key, log: inst.log, t: t, conns: map[netip.AddrPort]*conn{},
			instances: map[uint32]*instance{}, change: make(chan struct{}), stopped: make(chan struct{})}
		remotes[key] = r
		// Registered before anything runs: a state computed before the
		// first instance is there would be told to nobody, and not again
		// while it stays the same (a server sending garbage at once).
		r.instances[inst.vnetid] = inst
		r.refs++
		r.wg.Add(3)
		go r.resolveLoop()
		go r.pollLoop()
		go r.monitor()
		return r, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if other := r.instances[inst.vnetid]; other != nil {
		return nil, fmt.Errorf("another overlay already uses vnetid %d with mapping server %s:%d", inst.vnetid, key.host, key.port)
	}
	r.instances[inst.vnetid] = inst
	r.refs++
	// The state is told on transitions only: one that joins a remote
	// already DEGRADED must be told now. Not from here: Start runs under
	// the overlay manager's lock, which a Host may take.
	r.wg.Add(1)
	go r.tellState(inst)
	return r, nil
}

// tellState tells inst the remote's current state if it is DEGRADED.
// Under notifyMu, so that it cannot overtake a later transition.
func (r *remote) tellState(inst *instance) {
	defer r.wg.Done()
	r.notifyMu.Lock()
	defer r.notifyMu.Unlock()
	r.mu.Lock()
	reason, still := r.degraded, r.instances[inst.vnetid] == inst
	r.mu.Unlock()
	if still && reason != "" {
		inst.host.Degrade(reason)
	}
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
	conns := make([]*conn, 0, len(r.conns))
	for _, c := range r.conns {
		c.close()
		conns = append(conns, c)
	}
	r.mu.Unlock()
	r.wg.Wait()
	for _, c := range conns {
		<-c.done
	}
}

// resolveLoop keeps one connection per address of svp/host.
func (r *remote) resolveLoop() {
	defer r.wg.Done()
	for {
		r.resolve()
		select {
		case <-r.stopped:
			return
		case <-time.After(r.t.resolve):
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
		r.stateChanged(true)
		return
	}
	r.dnsErr = nil
	want := map[netip.AddrPort]bool{}
	for _, a := range addrs {
		want[netip.AddrPortFrom(a.Unmap(), r.key.port)] = true
	}
	for a, c := range r.conns {
		if !want[a] {
			// Gone from DNS: no new requests; the monitor closes it
			// once what is outstanding is answered.
			c.mu.Lock()
			c.winddown = true
			c.mu.Unlock()
		}
	}
	for a := range want {
		if c := r.conns[a]; c == nil {
			r.conns[a] = newConn(r, a)
		} else {
			c.mu.Lock()
			c.winddown = false
			c.mu.Unlock()
		}
	}
	r.mu.Unlock()
	r.stateChanged(true)
}

// monitor closes connections that made no progress for giveUp, reaps
// wound-down ones once idle, and re-evaluates the state as stalls age.
func (r *remote) monitor() {
	defer r.wg.Done()
	tick := time.NewTicker(r.t.tick)
	defer tick.Stop()
	for {
		select {
		case <-r.stopped:
			return
		case <-tick.C:
		}
		now := time.Now()
		r.mu.Lock()
		for a, c := range r.conns {
			st := c.state(now)
			switch {
			case st.winddown && (st.pending == 0 || st.noProgress > r.t.giveUp):
				c.close()
				delete(r.conns, a)
			case st.up && st.noProgress > r.t.giveUp:
				r.log.Warn("svp: closing a connection that made no progress", "server", a.String(),
					"for", st.stalled.Round(time.Second).String(), "outstanding", st.pending)
				c.kill(fmt.Sprintf("made no progress for %s with requests outstanding; reconnected", roundDur(r.t.giveUp)), true)
			}
		}
		r.mu.Unlock()
		r.stateChanged(false)
	}
}

// stateChanged re-evaluates whether the remote can do its job and tells
// the instances; with wake, it also wakes callers waiting for a
// connection.
func (r *remote) stateChanged(wake bool) {
	// One evaluation and its notifications at a time, so that a
	// Degrade and a Restore cannot overtake each other.
	r.notifyMu.Lock()
	defer r.notifyMu.Unlock()
	r.mu.Lock()
	reason := r.reasonLocked(time.Now())
	changed := reason != r.degraded
	r.degraded = reason
	insts := r.instanceList()
	if wake {
		close(r.change)
		r.change = make(chan struct{})
	}
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

// reasonLocked says why the remote is degraded, "" if it is not. The
// state follows answers: a connected server that answers nothing while
// asked is as bad as an unreachable one.
func (r *remote) reasonLocked(now time.Time) string {
	target := fmt.Sprintf("svp/host %s port %d", r.key.host, r.key.port)
	if r.dnsErr != nil && len(r.conns) == 0 {
		return fmt.Sprintf("cannot resolve %s: %v", target, r.dnsErr)
	}
	var stalled, broken []string
	var lastErr error
	healthy, tried, lostOnLog := false, false, false
	for _, a := range sortedAddrs(r.conns) {
		c := r.conns[a]
		st := c.state(now)
		lostOnLog = lostOnLog || st.lostOnLog
		server := fmt.Sprintf("mapping server %s port %d", a.Addr(), a.Port())
		switch {
		case st.up && st.stalled >= r.t.stallAfter:
			stalled = append(stalled, fmt.Sprintf("%s is not answering: no answer for %s (since %s) with requests outstanding",
				server, coarse(st.stalled, r.t.stallAfter), st.since.UTC().Format("15:04:05 UTC")))
			c.setReported()
		case st.failure != "" && (st.up || st.attempts == 0):
			// Up again (or reconnecting) after a failure: bad until
			// it answers.
			broken = append(broken, fmt.Sprintf("%s %s", server, st.failure))
			c.setReported()
		case st.up:
			healthy = true
		case st.attempts > 0:
			tried = true
			lastErr = st.lastErr
		}
	}
	if healthy {
		if r.logErr != "" {
			return r.logErr
		}
		if r.logClosures >= 2 {
			return fmt.Sprintf("mapping server %s port %d closed the connection on each of the last %d LOG_REQs (a server without a log, "+
				"such as Triton's portolan with its json store, dies of one): lookups are answered, but log polling is backed off to %s",
				r.logClosedBy.Addr(), r.logClosedBy.Port(), r.logClosures, roundDur(r.logWait))
		}
		return ""
	}
	note := ""
	if r.logClosures > 0 {
		n := "the last LOG_REQ"
		if r.logClosures > 1 {
			n = fmt.Sprintf("each of the last %d LOG_REQs", r.logClosures)
		}
		note = fmt.Sprintf("; the server closed the connection on %s (no log support?): log polling backed off to %s", n, roundDur(r.logWait))
	} else if lostOnLog {
		note = "; the server closed the last connection while a LOG_REQ was outstanding (no log support?)"
	}
	switch {
	case len(stalled) > 0:
		return strings.Join(append(stalled, broken...), "; ")
	case len(broken) > 0:
		if r.logClosures == 0 {
			note = "" // the failure names the LOG_REQ already
		}
		return strings.Join(broken, "; ") + note
	case tried:
		return fmt.Sprintf("cannot reach any mapping server (%s): %v%s", target, lastErr, note)
	}
	return "" // still connecting for the first time
}

func (c *conn) setReported() {
	c.mu.Lock()
	c.reported = true
	c.mu.Unlock()
}

// coarse rounds a stall's age down to a few steps, so that the reason
// (and the log of DEGRADED transitions) changes rarely while it lasts.
func coarse(d, first time.Duration) string {
	step := first
	for _, s := range []time.Duration{10 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute,
		5 * time.Minute, 10 * time.Minute, 30 * time.Minute, time.Hour} {
		if d >= s && s > step {
			step = s
		}
	}
	return "more than " + roundDur(step)
}

func roundDur(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		d = d.Round(time.Second)
	case d >= time.Second:
		d = d.Round(100 * time.Millisecond)
	}
	return d.String()
}

func sortedAddrs(m map[netip.AddrPort]*conn) []netip.AddrPort {
	addrs := make([]netip.AddrPort, 0, len(m))
	for a := range m {
		addrs = append(addrs, a)
	}
	sort.Slice(addrs, func(i, j int) bool { return addrs[i].Compare(addrs[j]) < 0 })
	return addrs
}

func (r *remote) instanceList() []*instance {
	out := make([]*instance, 0, len(r.instances))
	for _, in := range r.instances {
		out = append(out, in)
	}
	return out
}

// maxAttempts bounds the attempts of one call outstanding at once.
const maxAttempts = 8

type attempt struct {
	c  *conn
	id uint32
}

// call sends a request to some server and returns the reply's body. An
// attempt unanswered after t.attempt is repeated on another connection
// while it stays outstanding: whichever answers first wins, and the
// connection is not closed for it (see giveUp). An attempt whose
// connection fails is retried elsewhere at once. It gives up when ctx
// ends. idle marks a request that may legitimately wait long for its
// answer (a LOG_REQ the server holds): it does not count toward stall
// detection until overdue (t.logCall after it was sent).
// A LOG_REQ whose connection goes down is not retried; when the server
// closed it, the error wraps errLostOnLog.
func (r *remote) call(ctx context.Context, build func(dst []byte, id uint32) []byte, want svpwire.Op, idle bool) ([]byte, error) {
	var lastErr error = errConnDown
	replies := make(chan reply, maxAttempts)
	var out []attempt
	defer func() {
		for _, a := range out {
			a.c.abandon(a.id)
		}
	}()
	tried := map[*conn]uint64{} // the connection generation tried
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var pause <-chan time.Time
	need := true
	for {
		var wait <-chan struct{}
		if need && len(out) < maxAttempts {
			c, ch := r.pick(tried)
			if c != nil {
				id, gen, err := c.send(build, replies, want, idle)
				tried[c] = gen
				if err != nil {
					lastErr = err
					continue
				}
				out = append(out, attempt{c, id})
				need = false
				if !idle && want != svpwire.OpLogAck {
					// A LOG_REQ is not repeated elsewhere: that would
					// duplicate it to a slow server (and a held, long-poll
					// one is meant to wait).
					timer.Reset(r.t.attempt)
				}
			} else {
				wait = ch
				if len(out) == 0 && len(tried) > 0 && pause == nil {
					// Every server failed once: start over after a pause.
					pause = time.After(100 * time.Millisecond)
				}
			}
		}
		select {
		case rep := <-replies:
			for i, a := range out {
				if a.c == rep.c && a.id == rep.id {
					out = append(out[:i], out[i+1:]...)
					break
				}
			}
			if rep.err == nil {
				return rep.body, nil
			}
			lastErr = rep.err
			if want == svpwire.OpLogAck {
				// Not at once on another connection: that is how a
				// restarted server without a log is killed again.
				return nil, rep.err
			}
			need = true
		case <-timer.C:
			// No answer yet: ask elsewhere too, keep waiting here.
			need = true
		case <-wait:
		case <-pause:
			pause = nil
			clear(tried)
		case <-r.stopped:
			return nil, errors.New("the svp plugin was stopped")
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (last error: %v)", ctx.Err(), lastErr)
		}
	}
}

// pick returns the next connection to send on, round robin: up, not
// wound down, not yet tried in this generation, and not full; one that
// answers comes before one that has not answered for t.attempt. If there
// is none it returns a channel closed at the next state change.
func (r *remote) pick(tried map[*conn]uint64) (*conn, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	addrs := sortedAddrs(r.conns)
	now := time.Now()
	var slow *conn
	for i := range addrs {
		k := (r.rr + i) % len(addrs)
		c := r.conns[addrs[k]]
		st := c.state(now)
		if g, ok := tried[c]; !st.up || st.winddown || st.pending >= maxPending || ok && g == st.gen {
			continue
		}
		if st.stalled >= r.t.attempt {
			if slow == nil {
				slow = c
			}
			continue
		}
		r.rr = (k + 1) % len(addrs)
		return c, nil
	}
	if slow != nil {
		return slow, nil
	}
	return nil, r.change
}

// pollLoop fetches this host's log, applies it and removes what it
// applied, for as long as the remote lives. The first LOG_REQ waits
// t.logDelay, so that a server without a log, which dies of one, answers
// lookups first; a server that closes the connection on LOG_REQ again and
// again gets LOG_REQs ever more rarely (t.logDelay doubling up to
// t.logBackoffMax), while lookups go on.
//
// Otherwise one LOG_REQ is kept outstanding against a server that holds
// it while the log is empty (a long poll): an empty LOG_ACK that took at
// least t.pollInterval to come back was held, and the next LOG_REQ goes
// out at once, so an entry reaches this host in one round trip. One that
// came back sooner (a server that answers at once) is followed by a
// pause of t.pollInterval. Either way an empty log is asked at most about
// once per t.pollInterval, and the threshold needs no knowledge of the
// server's hold. A LOG_ACK with entries is followed by the next LOG_REQ
// at once.
func (r *remote) pollLoop() {
	defer r.wg.Done()
	wait := r.t.logDelay
	for {
		select {
		case <-r.stopped:
			return
		case <-time.After(wait):
		}
		if hold, ok := r.logHold(time.Now()); !ok || hold > 0 {
			// No connection has answered yet, or one only just did:
			// lookups first (a LOG_REQ sent right behind the connect is
			// what kills a restarted server without a log again).
			wait = hold
			if !ok {
				wait = r.t.pollInterval
			}
			continue
		}
		more, took, err := r.pollOnce()
		r.setLogErr(err)
		wait = r.t.pollInterval
		if more || err == nil && took >= r.t.pollInterval {
			wait = 0 // entries (there may be more), or held: ask again at once
		}
		r.mu.Lock()
		switch {
		case errors.Is(err, errLostOnLog):
			r.logClosures++
			var le *lostOnLogError
			if errors.As(err, &le) {
				r.logClosedBy = le.addr
			}
			// From the delay (at least a poll interval: a delay of 0 must
			// not turn the backoff off) doubling up to logBackoffMax.
			base := max(r.t.logDelay, r.t.pollInterval)
			r.logWait = min(base<<min(r.logClosures-1, 20), r.t.logBackoffMax)
			wait = max(r.logWait, r.t.pollInterval)
			r.log.Warn("svp: the mapping server closed the connection on LOG_REQ; backing off log polling",
				"server", r.logClosedBy.String(), "times_in_a_row", r.logClosures, "next_poll_in", wait.String())
		case err == nil, isLogStatus(err):
			r.logClosures, r.logWait = 0, 0 // it answered a LOG_REQ
		case r.logClosures > 0:
			// Any other failure (a timeout, no connection) while backed
			// off keeps the backoff.
			wait = max(r.logWait, r.t.pollInterval)
		}
		r.mu.Unlock()
		r.stateChanged(false)
	}
}

// logHold says how much longer the log poll must wait: until every
// connection that is up has answered for t.logDelay, so that a server
// that just came back answers lookups before it meets a LOG_REQ. ok is
// false while no connection has answered at all.
func (r *remote) logHold(now time.Time) (hold time.Duration, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		st := c.state(now)
		if !st.up || st.winddown || st.answeredAt.IsZero() {
			continue
		}
		ok = true
		hold = max(hold, st.answeredAt.Add(r.t.logDelay).Sub(now))
	}
	return hold, ok
}

// lostOnLogError is errLostOnLog with the server's address.
type lostOnLogError struct {
	addr netip.AddrPort
	err  error
}

func (e *lostOnLogError) Error() string { return e.err.Error() }
func (e *lostOnLogError) Unwrap() error { return e.err }

func isLogStatus(err error) bool {
	var le *logError
	return errors.As(err, &le)
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
		r.stateChanged(false)
	}
}

// pollOnce does one LOG_REQ / apply / LOG_RM round and reports whether
// entries came (so there may be more), and how long the LOG_REQ took to
// be answered. The LOG_REQ is idle: the server may hold it (up to
// t.logHold) without that counting as a stall.
func (r *remote) pollOnce() (more bool, took time.Duration, err error) {
	sent := time.Now()
	reqCtx, cancel := context.WithTimeout(context.Background(), r.t.logCall)
	body, err := r.call(reqCtx, svpwire.LogReq{Count: logCount, IP: r.key.underlay}.AppendFrame, svpwire.OpLogAck, true)
	cancel()
	took = time.Since(sent)
	if err != nil {
		return false, took, err
	}
	more, err = r.applyLog(body)
	return more, took, err
}

// applyLog applies a LOG_ACK's entries and removes those applied from
// the server's log, within t.logCall (a budget of its own: the LOG_REQ
// may have been held most of its own).
func (r *remote) applyLog(body []byte) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), r.t.logCall)
	defer cancel()
	ack, err := svpwire.DecodeLogAck(body)
	if err != nil {
		return false, err
	}
	if ack.Status != svpwire.StatusOK {
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
		body, err := r.call(ctx, svpwire.LogRm{IDs: ids[:n]}.AppendFrame, svpwire.OpLogRmAck, false)
		if err != nil {
			return false, err
		}
		if ack, err := svpwire.DecodeLogRmAck(body); err != nil || ack.Status != svpwire.StatusOK {
			return false, fmt.Errorf("LOG_RM refused: %v %v", ack.Status, err)
		}
		ids = ids[n:]
	}
	// Nothing applied (entries to retry later): wait as if it were empty.
	return applied, nil
}

// apply acts on one log entry and reports whether it is done (and may be
// removed from the server's log).
func (r *remote) apply(ctx context.Context, e svpwire.LogEntry) bool {
	r.mu.Lock()
	in := r.instances[e.VNetID]
	r.mu.Unlock()
	if in == nil {
		return true // no overlay here for that network: nothing cached
	}
	switch e.Type {
	case svpwire.LogVL2:
		in.host.Invalidate(ether.MAC(e.MAC))
		in.log.Debug("svp: log: forget MAC", "mac", ether.Short(e.MAC))
		return true
	case svpwire.LogVL3:
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
		in.host.Learn(search.Answer{MAC: mac, Dest: dest, IPs: []netip.Addr{e.IP}})
		in.host.Announce(e.VLAN, e.IP, mac)
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
