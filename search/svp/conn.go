package svp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"overlaynet/svpwire"
)

// maxPending bounds the requests outstanding on one connection (answered
// or given up on by their callers): a connection that has this many gets
// no more until answers come or it is closed for making no progress.
const maxPending = 4096

var (
	errConnDown = errors.New("connection to the mapping server is down")
	errBusy     = errors.New("too many requests outstanding on the connection")
	// errLostOnLog marks the failure of a LOG_REQ whose connection the
	// server closed while the LOG_REQ was outstanding: what a server
	// without a log (Triton's json store) does when it dies of one.
	errLostOnLog = errors.New("the mapping server closed the connection while a LOG_REQ was outstanding")
)

// reply is what a pending request gets: a body copy, or an error.
type reply struct {
	c    *conn
	id   uint32
	body []byte
	err  error
}

// pendingReq is a request sent and not answered yet.
type pendingReq struct {
	// ch gets the reply; nil once the caller gave up, so that a late
	// answer is dropped quietly rather than taken for a protocol error.
	ch   chan<- reply
	want svpwire.Op
	// idle requests may legitimately stay unanswered for long (a
	// LOG_REQ held by the server, a long poll): they do not count toward
	// stall detection until they are overdue (t.logCall after sent).
	idle bool
	sent time.Time
}

// conn is one TCP connection to one address of the mapping service, kept
// up (redialled with backoff) until closed. Requests are pipelined and
// matched to replies by id, in any order.
//
// Whether the server answers is tracked here, not whether the socket is
// up: a stopped process keeps its sockets (and its listen queue accepts
// a redial at once) while answering nothing.
type conn struct {
	addr   netip.AddrPort
	remote *remote

	mu      sync.Mutex
	c       net.Conn // nil while down
	w       *bufio.Writer
	gen     uint64 // incremented at each connect
	pending map[uint32]*pendingReq
	nextID  uint32
	// counted is how many pending requests count toward stall
	// detection; waitSince is when the connection last made progress
	// while counted > 0 (the oldest such request's send time, or the
	// last answer since), zero when counted == 0.
	counted   int
	waitSince time.Time
	// idleSent holds the send times of the pending idle requests (held
	// LOG_REQs: one or two). One unanswered for t.logCall is overdue:
	// it then counts as if sent at that time (see waitSinceLocked).
	idleSent map[uint32]time.Time
	// lastAnswer is when the current connection last answered.
	lastAnswer time.Time
	// logPending is how many LOG_REQs are pending.
	logPending int
	// failure is why the last connection ended badly (garbage, a close
	// with requests outstanding); it stands until the next answer.
	failure string
	// lostOnLog: the last connection was closed by the server with a
	// LOG_REQ outstanding.
	lostOnLog bool
	// killed is why we closed the current connection ourselves.
	killed string
	// carry is the start of a stall that closing the connection did not
	// end: the next connection continues it until it answers.
	carry     time.Time
	connected time.Time // when the current connection was made
	// answeredAt is when the current connection first answered: the
	// log waits t.logDelay after it, so a server that just came back
	// answers lookups before it meets a LOG_REQ.
	answeredAt time.Time
	closeErr   error // a write found the server had closed the connection
	lastErr    error // of the last failed dial
	attempts   int   // failed dials since the last success
	// reported: the remote counted this connection as not answering;
	// the next answer re-evaluates the state at once.
	reported bool
	winddown bool // gone from DNS: close once idle
	closed   bool
	quit     chan struct{} // closed by close
	done     chan struct{} // closed when run ends
}

func newConn(r *remote, addr netip.AddrPort) *conn {
	c := &conn{addr: addr, remote: r, pending: map[uint32]*pendingReq{}, idleSent: map[uint32]time.Time{},
		quit: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c
}

// run keeps the connection up until close.
func (c *conn) run() {
	defer close(c.done)
	t := &c.remote.t
	backoff := t.minBackoff
	for {
		c.mu.Lock()
		closed := c.closed
		c.mu.Unlock()
		if closed {
			return
		}
		nc, err := c.dial(t.dialTimeout)
		if err != nil {
			c.mu.Lock()
			c.lastErr, c.attempts = err, c.attempts+1
			c.mu.Unlock()
			c.remote.stateChanged(true)
			if !c.sleep(backoff) {
				return
			}
			backoff = min(backoff*2, t.maxBackoff)
			continue
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			nc.Close()
			return
		}
		carry := c.carry
		c.carry = time.Time{}
		c.c, c.w, c.attempts, c.lastErr, c.killed = nc, bufio.NewWriter(nc), 0, nil, ""
		c.connected = time.Now()
		c.gen++
		// A PING first: a connect succeeds even to a stopped process,
		// and after a failure only an answer shows the server works.
		_, err = c.sendLocked(svpwire.AppendFrame(nil, svpwire.OpPing, c.nextID+1, nil), nil, svpwire.OpPong, false, false)
		if err == nil && !carry.IsZero() {
			c.waitSince = carry
		}
		c.mu.Unlock()
		c.remote.log.Info("svp: connected to mapping server", "server", c.addr.String())
		c.remote.stateChanged(true)
		answered, err := c.read(nc)
		c.lost(nc, err)
		if answered {
			backoff = t.minBackoff
		} else {
			// It accepts and then fails without answering anything:
			// do not hammer it.
			if !c.sleep(backoff) {
				return
			}
			backoff = min(backoff*2, t.maxBackoff)
		}
	}
}

// dial connects to the server, giving up when close is called: a
// release (which holds the overlay manager's lock) must not wait out a
// dial to an unreachable server.
func (c *conn) dial(timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-c.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	return (&net.Dialer{Timeout: timeout}).DialContext(ctx, "tcp", c.addr.String())
}

// lost tears the connection down after read failed with err: every
// pending request fails (and is retried elsewhere by its caller), and
// the failure is recorded for the DEGRADED reason.
func (c *conn) lost(nc net.Conn, err error) {
	c.mu.Lock()
	if c.closeErr != nil && errors.Is(err, net.ErrClosed) {
		err = c.closeErr
	}
	c.closeErr = nil
	byServer := c.killed == "" && !c.closed
	n, logs := len(c.pending), c.logPending
	// A LOG_REQ the server has been holding (idle, neither just sent
	// nor overdue) is nothing lost: it is asked again on the next
	// connection. A connection closed with only that pending closed
	// while idle, and says nothing of the server or its log.
	for _, p := range c.pending {
		if age := time.Since(p.sent); p.idle && age >= c.remote.t.attempt && age < c.remote.t.logCall {
			n--
			if p.want == svpwire.OpLogAck {
				logs--
			}
		}
	}
	switch {
	case !byServer:
		if c.killed != "" {
			c.failure = c.killed
		}
	case errors.Is(err, io.ErrUnexpectedEOF):
		c.failure = "closed the connection in the middle of a frame"
	case isClose(err) && logs > 0:
		c.failure = "closed the connection while a LOG_REQ was outstanding"
	case isClose(err) && n > 0:
		c.failure = fmt.Sprintf("closed the connection with %d requests outstanding", n)
	case isClose(err):
		// An idle connection closed: nothing lost, nothing to report.
	default:
		c.failure = err.Error()
	}
	// A close counts as "on LOG_REQ" only when a LOG_REQ went out just
	// before it (within one attempt time): a server without a log dies
	// of one at once, whereas a LOG_REQ that merely waited long (a
	// stopped server killed later, a held long-poll) says nothing of the
	// log, and must not back polling off.
	recentLog := false
	for _, p := range c.pending {
		if p.want == svpwire.OpLogAck && time.Since(p.sent) < c.remote.t.attempt {
			recentLog = true
		}
	}
	onLog := byServer && recentLog && (isClose(err) || errors.Is(err, io.ErrUnexpectedEOF))
	c.lostOnLog = onLog
	down := fmt.Errorf("%w: %v", errConnDown, err)
	for id, p := range c.pending {
		if p.ch != nil {
			var e error = down
			if onLog && p.want == svpwire.OpLogAck {
				e = &lostOnLogError{addr: c.addr, err: fmt.Errorf("%w: %w", errLostOnLog, down)}
			}
			p.ch <- reply{c: c, id: id, err: e}
		}
		delete(c.pending, id)
	}
	c.waitSince, c.answeredAt, c.lastAnswer = time.Time{}, time.Time{}, time.Time{}
	c.counted, c.logPending = 0, 0
	clear(c.idleSent)
	c.c, c.w = nil, nil
	closed := c.closed
	c.mu.Unlock()
	nc.Close()
	if !closed {
		c.remote.log.Warn("svp: lost mapping server", "server", c.addr.String(), "err", err)
	}
	c.remote.stateChanged(true)
}

// isClose reports whether err is the server closing its side.
func isClose(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func (c *conn) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.quit:
		return false
	}
}

// read hands replies to their requests until the connection fails, and
// reports whether anything was answered. A reply that is malformed, of
// the wrong op or for no pending request resets the connection, as
// illumos does; a late reply to a request whose caller gave up is dropped.
func (c *conn) read(nc net.Conn) (answered bool, err error) {
	r := svpwire.NewReader(nc, svpwire.MaxBody)
	for {
		f, err := r.Next()
		if err != nil {
			var fe *svpwire.FrameError
			if errors.As(err, &fe) && !errors.Is(err, io.ErrUnexpectedEOF) {
				err = fmt.Errorf("sent a malformed frame: %w", err)
			}
			return answered, err
		}
		if f.Op == svpwire.OpShootdown {
			// One way from server to client; not used by portolan, but
			// harmless to honour.
			if m, err := svpwire.DecodeShootdown(f.Body); err == nil {
				c.remote.shootdown(m.VNetID, m.MAC)
			}
			continue
		}
		c.mu.Lock()
		p := c.pending[f.ID]
		if p == nil {
			c.mu.Unlock()
			return answered, fmt.Errorf("answered %s with id %d, which no request has", f.Op, f.ID)
		}
		if f.Op != p.want {
			c.mu.Unlock()
			return answered, fmt.Errorf("answered %s to a request wanting %s", f.Op, p.want)
		}
		delete(c.pending, f.ID)
		c.progressLocked(f.ID, p)
		answered = true
		if c.answeredAt.IsZero() {
			c.answeredAt = time.Now()
		}
		c.failure, c.lostOnLog = "", false
		kick := c.reported
		c.reported = false
		ch := p.ch
		c.mu.Unlock()
		if ch != nil {
			ch <- reply{c: c, id: f.ID, body: append([]byte(nil), f.Body...)}
		}
		if kick {
			c.remote.stateChanged(true) // cleared on the first answer
		}
	}
}

// progressLocked accounts for the answer to p, request id.
func (c *conn) progressLocked(id uint32, p *pendingReq) {
	c.lastAnswer = time.Now()
	if p.want == svpwire.OpLogAck {
		c.logPending--
	}
	if p.idle {
		delete(c.idleSent, id)
		return
	}
	c.counted--
	if c.counted == 0 {
		c.waitSince = time.Time{}
	} else {
		c.waitSince = time.Now()
	}
}

// send sends one request whose reply goes to ch, and returns its id and
// the connection generation it went on.
func (c *conn) send(build func(dst []byte, id uint32) []byte, ch chan<- reply, want svpwire.Op, idle bool) (uint32, uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c == nil {
		return 0, c.gen, errConnDown
	}
	if len(c.pending) >= maxPending {
		return 0, c.gen, errBusy
	}
	id, err := c.sendLocked(build(nil, c.nextID+1), ch, want, idle, want == svpwire.OpLogAck)
	return id, c.gen, err
}

// sendLocked writes frame, built for id c.nextID+1, and registers it.
func (c *conn) sendLocked(frame []byte, ch chan<- reply, want svpwire.Op, idle, isLog bool) (uint32, error) {
	c.nextID++
	id := c.nextID
	// A server that stops reading must not wedge every caller behind
	// this lock.
	c.c.SetWriteDeadline(time.Now().Add(c.remote.t.attempt))
	c.w.Write(frame)
	if err := c.w.Flush(); err != nil {
		// Part of a frame may be out: the stream is lost. The reader
		// notices and fails every pending request.
		if isClose(err) {
			c.closeErr = err // the server closed it: say so, as the reader would
		} else {
			c.killed = fmt.Sprintf("could not take a request: %v", err)
		}
		c.c.Close()
		return 0, err
	}
	now := time.Now()
	c.pending[id] = &pendingReq{ch: ch, want: want, idle: idle, sent: now}
	if isLog {
		c.logPending++
	}
	if idle {
		c.idleSent[id] = now
	} else {
		if c.counted == 0 {
			c.waitSince = time.Now()
		}
		c.counted++
	}
	return id, nil
}

// abandon forgets the caller of request id: its answer, if it comes, is
// dropped. The request still counts as outstanding: the server owes it.
func (c *conn) abandon(id uint32) {
	c.mu.Lock()
	if p := c.pending[id]; p != nil {
		p.ch = nil
	}
	c.mu.Unlock()
}

// connState is what the remote needs to know of a connection.
type connState struct {
	up      bool
	gen     uint64
	stalled time.Duration // how long it has answered nothing while asked
	since   time.Time     // when that began
	// noProgress is how long this connection (not its predecessors) has
	// answered nothing while asked: what giveUp is measured against, so
	// that each new connection gets its own chance.
	noProgress time.Duration
	failure    string
	lostOnLog  bool
	attempts   int
	lastErr    error
	pending    int
	winddown   bool
	answeredAt time.Time // when this connection first answered; zero if not yet
}

func (c *conn) state(now time.Time) connState {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := connState{up: c.c != nil, gen: c.gen, failure: c.failure, lostOnLog: c.lostOnLog,
		attempts: c.attempts, lastErr: c.lastErr, pending: len(c.pending), winddown: c.winddown,
		answeredAt: c.answeredAt}
	if w := c.waitSinceLocked(now); !w.IsZero() && s.up {
		s.since = w
		s.stalled = now.Sub(w)
		s.noProgress = now.Sub(w)
		if c.connected.After(w) {
			s.noProgress = now.Sub(c.connected)
		}
	}
	return s
}

// waitSinceLocked is waitSince with the overdue idle requests counted:
// a held LOG_REQ unanswered for t.logCall (beyond any sane server's
// hold) is owed from then on like any request, so the server's silence
// since then (or since its last answer, if later) is a stall, and
// giveUp later the connection is closed.
func (c *conn) waitSinceLocked(now time.Time) time.Time {
	w := c.waitSince
	for _, sent := range c.idleSent {
		due := sent.Add(c.remote.t.logCall)
		if due.After(now) {
			continue
		}
		if c.lastAnswer.After(due) {
			due = c.lastAnswer
		}
		if w.IsZero() || due.Before(w) {
			w = due
		}
	}
	return w
}

// kill closes the current connection (not the conn: it redials) for why,
// which becomes its failure. A stall that the close does not end (the
// server made no progress) continues on the next connection.
func (c *conn) kill(why string, stall bool) {
	c.mu.Lock()
	if c.c != nil && c.killed == "" {
		c.killed = why
		if stall {
			c.carry = c.waitSinceLocked(time.Now())
		}
		c.c.Close()
	}
	c.mu.Unlock()
}

// close ends the connection for good.
func (c *conn) close() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.quit)
		if c.c != nil {
			c.c.Close()
		}
	}
	c.mu.Unlock()
}
