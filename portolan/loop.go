package portolan

import (
	"errors"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"overlaynet/epoll"
	"overlaynet/svpwire"
)

// The event loops serve every connection whose socket they can take (all
// TCP connections): GOMAXPROCS loops, each with its share of them, read
// every ready connection after one epoll_wait and answer PING, VL2_REQ
// and VL3_REQ (with Lookups) in place, one write per read. A goroutine per
// connection costs, per request, a read that finds nothing, deadline
// timers and a scheduler wake-up: at 10,000 hosts that was half the
// server's CPU, and the reason lookups queued behind a change's burst of
// log deliveries (README, "Sizing portolan").
//
// Requests that do I/O (the log, BULK_REQ, and every request without
// Lookups) go to the connection's queue, drained by a goroutine started
// while the queue holds requests, as the worker of a goroutine-per-
// connection server would; replies from anywhere go through lconn.send.
// A connection whose queue or unsent output is full is read no further
// until it drains, as a blocked reader would.

const (
	// maxOut is the unsent output past which a connection is read no
	// further: its client is not taking its replies.
	maxOut = 256 << 10
	// sweepEvery is how often a loop looks for idle and stuck connections.
	sweepEvery = 5 * time.Second
	// readBuf is a loop's read buffer: any request (the largest is
	// maxBody) fits whole in it.
	readBuf = svpwire.HeaderLen + maxBody
)

// loop is one event loop and the connections it reads.
type loop struct {
	s  *Server
	ep *epoll.Poller

	mu    sync.Mutex
	conns []*lconn // by key; nil: free
	free  []int32
	stop  bool

	buf   []byte
	batch []byte

	// pending are the connections with replies from other goroutines
	// to write (lconn.send): the loop alone writes to its sockets, so
	// that no goroutine holds a connection's lock across a system call,
	// and so that a burst of log replies is written between reads, a
	// slice at a time, instead of by thousands of goroutines at once.
	pmu     sync.Mutex
	pending []*lconn
	flushes []*lconn // the loop's own: taken from pending
}

// flushSlice is how many connections' queued replies the loop writes
// between two looks at its sockets.
const flushSlice = 64

// lconn is a connection served by a loop.
type lconn struct {
	*conn
	l   *loop
	key int32
	fd  int

	in       []byte // the start of a frame not yet whole (loop only)
	lastRead time.Time

	mu       sync.Mutex // everything below
	detached bool       // no longer in the loop's poller
	closed   bool       // fd is closed, or about to be
	queued   bool       // in the loop's pending
	out      []byte     // replies the socket has not taken
	outSince time.Time  // when out began to wait
	events   uint32     // watched
	queue    []request  // requests waiting for the drain goroutine
	draining bool       // the drain goroutine runs
	held     bool       // the queue was full: read no further
}

// startLoops starts the loops of one Serve call; they end with ctx.
func (s *Server) startLoops(stop <-chan struct{}) ([]*loop, error) {
	var loops []*loop
	for range max(1, runtime.GOMAXPROCS(0)) {
		ep, err := epoll.New(256)
		if err != nil {
			for _, l := range loops {
				l.ep.Close()
			}
			return nil, err
		}
		loops = append(loops, &loop{s: s, ep: ep, buf: make([]byte, readBuf)})
	}
	for _, l := range loops {
		go l.run(stop)
	}
	return loops, nil
}

// add hands an accepted connection to l; false when its socket cannot be
// taken (the caller serves it with a goroutine then).
func (l *loop) add(cn *conn, c net.Conn, wg *sync.WaitGroup) bool {
	if _, ok := c.(syscall.Conn); !ok {
		return false
	}
	fd, err := epoll.Take(c)
	if err != nil {
		return false
	}
	lc := &lconn{conn: cn, l: l, fd: fd, lastRead: time.Now(), events: epoll.In}
	cn.lc = lc
	l.mu.Lock()
	if l.stop {
		l.mu.Unlock()
		unix.Close(fd)
		cn.cancel()
		return true
	}
	if n := len(l.free); n > 0 {
		lc.key = l.free[n-1]
		l.free = l.free[:n-1]
		l.conns[lc.key] = lc
	} else {
		lc.key = int32(len(l.conns))
		l.conns = append(l.conns, lc)
	}
	wg.Add(1)
	lc.done = wg.Done
	err = l.ep.Add(fd, epoll.In, lc.key)
	l.mu.Unlock()
	l.s.conns.Add(1)
	cn.log.Debug("connection opened")
	if err != nil {
		cn.log.Warn("closing connection", "err", err)
		l.close(lc, false)
	}
	return true
}

// run is the loop. When stop closes it closes every connection it has.
func (l *loop) run(stop <-chan struct{}) {
	go func() {
		<-stop
		l.mu.Lock()
		l.stop = true
		l.mu.Unlock()
		l.ep.Wake()
	}()
	lastSweep := time.Now()
	type readyConn struct {
		lc     *lconn
		events uint32
	}
	var ready []readyConn
	for {
		wait := sweepEvery
		if len(l.flushes) > 0 {
			wait = 0
		}
		evs, err := l.ep.Wait(wait)
		if err != nil {
			l.s.logger().Error("event loop failed", "err", err)
		}
		l.mu.Lock()
		if l.stop {
			conns := l.conns
			l.conns = nil
			l.mu.Unlock()
			for _, lc := range conns {
				if lc != nil {
					l.close(lc, false)
				}
			}
			l.ep.Close()
			return
		}
		ready = ready[:0]
		for _, ev := range evs {
			if ev.Fd >= 0 && int(ev.Fd) < len(l.conns) && l.conns[ev.Fd] != nil {
				ready = append(ready, readyConn{l.conns[ev.Fd], ev.Events})
			}
		}
		l.mu.Unlock()
		for _, r := range ready {
			if r.events&unix.EPOLLOUT != 0 {
				r.lc.flush()
			}
			if r.events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				l.read(r.lc, r.events&(unix.EPOLLHUP|unix.EPOLLERR) != 0)
			}
		}
		l.flushSome()
		if now := time.Now(); now.Sub(lastSweep) >= sweepEvery {
			lastSweep = now
			l.sweep(now)
		}
	}
}

// read reads what lc's client sent and answers or queues every whole
// request in it. A connection held (its queue or output full) is read
// only to learn of an error or hang-up, which epoll reports for as long
// as it lasts.
func (l *loop) read(lc *lconn, hup bool) {
	lc.mu.Lock()
	skip := lc.detached || (lc.events&epoll.In == 0 && !hup)
	lc.mu.Unlock()
	if skip {
		return
	}
	n, err := unix.Read(lc.fd, l.buf)
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
		return
	}
	if err != nil || n == 0 {
		// n == 0: the client closed its side cleanly (it may have shut
		// down only its writing half): answer what it sent before.
		clean := err == nil
		if clean && len(lc.in) > 0 {
			clean = false
			err = errors.New("the client closed the connection in the middle of a frame")
		}
		if (clean || errors.Is(err, unix.ECONNRESET)) && lc.ctx.Err() == nil {
			if m := lc.unanswered.Load(); m > 0 {
				l.s.closedInFlight.Add(1)
				lc.log.Warn("client closed a connection with requests in flight", "requests", m)
			}
		}
		if !clean && !errors.Is(err, unix.ECONNRESET) {
			lc.log.Warn("closing connection", "err", err)
		}
		l.close(lc, clean)
		return
	}
	lc.lastRead = time.Now()
	data := l.buf[:n]
	if len(lc.in) > 0 {
		lc.in = append(lc.in, data...)
		data = lc.in
	}
	batch := l.batch[:0]
	var answered uint64
	var bad error
	for len(data) > 0 {
		f, m, err := svpwire.Parse(data, maxBody)
		if err != nil {
			bad = err
			break
		}
		if m == 0 {
			break
		}
		data = data[m:]
		var ok bool
		if batch, ok = lc.hot(batch, f); ok {
			answered++
			continue
		}
		req, err := lc.prepare(f)
		if err != nil {
			lc.log.Warn("closing connection: bad request", "op", f.Op.String(), "err", err)
			bad = errNoLog
			break
		}
		lc.push(req)
	}
	l.s.requests.Add(answered)
	if len(batch) > 0 {
		lc.sendNow(batch)
	}
	l.batch = batch[:0]
	if bad != nil {
		if bad != errNoLog {
			lc.log.Warn("closing connection: bad frame", "err", bad)
		}
		l.close(lc, false)
		return
	}
	switch {
	case len(data) == 0:
		if cap(lc.in) > 4<<10 {
			lc.in = nil
		} else {
			lc.in = lc.in[:0]
		}
	default:
		lc.in = append(lc.in[:0], data...) // copy handles data aliasing lc.in
	}
}

// errNoLog marks a close already logged.
var errNoLog = errors.New("already logged")

// push queues a request for the drain goroutine, starting it if needed.
func (lc *lconn) push(req request) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.queue = append(lc.queue, req)
	if len(lc.queue) >= workQueue && !lc.held {
		lc.held = true
		lc.setEventsLocked()
	}
	if !lc.draining {
		lc.draining = true
		lc.tasks.Add(1)
		go lc.drain()
	}
}

// drain answers the queued requests in order, then returns.
func (lc *lconn) drain() {
	defer lc.tasks.Done()
	var slots chan struct{}
	if lc.s.Lookups == nil {
		slots = make(chan struct{}, maxInFlight)
	}
	for {
		lc.mu.Lock()
		if len(lc.queue) == 0 || lc.ctx.Err() != nil {
			lc.queue = nil
			lc.draining = false
			lc.mu.Unlock()
			return
		}
		req := lc.queue[0]
		lc.queue[0] = request{}
		lc.queue = lc.queue[1:]
		if lc.held && len(lc.queue) < workQueue/2 {
			lc.held = false
			lc.setEventsLocked()
		}
		lc.mu.Unlock()
		if slots == nil {
			lc.work1(req)
			continue
		}
		// Without Lookups every lookup is a store query: up to
		// maxInFlight at once, replies in any order.
		select {
		case slots <- struct{}{}:
		case <-lc.ctx.Done():
			continue
		}
		lc.tasks.Add(1)
		go func() {
			defer lc.tasks.Done()
			defer func() { <-slots }()
			lc.reply(lc.answer(req), req.counted)
		}()
	}
}

// send queues b for the loop to write; false when the connection is
// closed or failed. Any goroutine but the loop's may call it; replies
// leave in the order of the calls.
func (lc *lconn) send(b []byte) bool {
	lc.mu.Lock()
	if lc.closed {
		lc.mu.Unlock()
		return false
	}
	lc.s.writes.Add(1)
	if len(lc.out) == 0 {
		lc.outSince = time.Now()
	}
	lc.out = append(lc.out, b...)
	if len(lc.out) >= maxOut {
		lc.setEventsLocked() // read no further
	}
	queue := !lc.queued && !lc.detached // detached: finish writes it
	lc.queued = lc.queued || queue
	lc.mu.Unlock()
	if queue {
		l := lc.l
		l.pmu.Lock()
		wake := len(l.pending) == 0
		l.pending = append(l.pending, lc)
		l.pmu.Unlock()
		if wake {
			l.ep.Wake()
		}
	}
	return true
}

// sendNow writes b from the loop itself, after what is queued; what the
// socket does not take waits for EPOLLOUT.
func (lc *lconn) sendNow(b []byte) bool {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.closed {
		return false
	}
	lc.s.writes.Add(1)
	if len(lc.out) == 0 {
		n, err := unix.Write(lc.fd, b)
		if err != nil && !errors.Is(err, unix.EAGAIN) {
			lc.failLocked()
			return false
		}
		n = max(n, 0)
		if n == len(b) {
			return true
		}
		b = b[n:]
		lc.outSince = time.Now()
	}
	lc.out = append(lc.out, b...)
	lc.flushLocked()
	return true
}

// flushSome writes the queued replies of up to flushSlice connections.
func (l *loop) flushSome() {
	if len(l.flushes) == 0 {
		l.pmu.Lock()
		l.flushes, l.pending = l.pending, l.flushes[:0]
		l.pmu.Unlock()
	}
	n := min(len(l.flushes), flushSlice)
	for _, lc := range l.flushes[:n] {
		lc.mu.Lock()
		lc.queued = false
		lc.flushLocked()
		lc.mu.Unlock()
	}
	clear(l.flushes[:n])
	l.flushes = l.flushes[n:]
	if len(l.flushes) == 0 {
		l.flushes = l.flushes[:0:0]
	}
}

// flush writes what waited for EPOLLOUT.
func (lc *lconn) flush() {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.flushLocked()
}

// flushLocked writes what waits in out, from the loop.
func (lc *lconn) flushLocked() {
	if lc.closed || len(lc.out) == 0 {
		return
	}
	n, err := unix.Write(lc.fd, lc.out)
	if err != nil && !errors.Is(err, unix.EAGAIN) {
		lc.failLocked()
		return
	}
	n = max(n, 0)
	lc.out = lc.out[:copy(lc.out, lc.out[n:])]
	if len(lc.out) == 0 {
		lc.out = nil // an idle connection holds no buffer
	} else if n > 0 {
		lc.outSince = time.Now()
	}
	lc.setEventsLocked()
}

// failLocked ends a connection whose write failed: the loop sees the
// shutdown as a hang-up and closes it.
func (lc *lconn) failLocked() {
	lc.cancel()
	unix.Shutdown(lc.fd, unix.SHUT_RDWR)
}

// setEventsLocked watches what the connection waits for: input unless
// its queue or output is full, output while some waits.
func (lc *lconn) setEventsLocked() {
	if lc.detached {
		return
	}
	var want uint32
	if !lc.held && len(lc.out) < maxOut {
		want |= epoll.In
	}
	if len(lc.out) > 0 {
		want |= epoll.Out
	}
	if want != lc.events {
		lc.events = want
		lc.l.ep.Mod(lc.fd, want, lc.key)
	}
}

// close stops reading lc. A clean close (the client closed its side)
// answers what was sent before it: held LOG_REQs at once, the queue in
// order, then the socket is closed once the replies are written.
// Otherwise what is in flight is dropped and the socket closed now.
func (l *loop) close(lc *lconn, clean bool) {
	l.mu.Lock()
	if int(lc.key) < len(l.conns) && l.conns[lc.key] == lc {
		l.conns[lc.key] = nil
		l.free = append(l.free, lc.key)
	}
	l.mu.Unlock()
	lc.mu.Lock()
	if lc.detached {
		lc.mu.Unlock()
		return
	}
	lc.detached = true
	l.ep.Del(lc.fd)
	lc.events = 0
	if !clean {
		lc.closed = true
		unix.Close(lc.fd)
	}
	lc.mu.Unlock()
	if clean {
		close(lc.released)
	} else {
		lc.cancel()
	}
	go func() {
		lc.tasks.Wait()
		if clean {
			lc.finish()
		}
		lc.cancel()
		l.s.conns.Add(-1)
		lc.log.Debug("connection closed")
		lc.done()
	}()
}

// finish writes what is left of a cleanly closed connection's replies
// (within writeTimeout, and while the server runs) and closes it.
func (lc *lconn) finish() {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	deadline := time.Now().Add(writeTimeout)
	for len(lc.out) > 0 && time.Now().Before(deadline) && lc.ctx.Err() == nil {
		n, err := unix.Write(lc.fd, lc.out)
		if err != nil && !errors.Is(err, unix.EAGAIN) {
			break
		}
		lc.out = lc.out[max(n, 0):]
		if len(lc.out) > 0 {
			pfd := []unix.PollFd{{Fd: int32(lc.fd), Events: unix.POLLOUT}}
			unix.Poll(pfd, 100) // a slice of the wait: the server may be stopping
		}
	}
	lc.closed = true
	unix.Close(lc.fd)
}

// sweep closes connections idle for idleTimeout, and those whose client
// has not taken a reply for writeTimeout.
func (l *loop) sweep(now time.Time) {
	l.mu.Lock()
	var stale []*lconn
	for _, lc := range l.conns {
		if lc == nil {
			continue
		}
		lc.mu.Lock()
		stuck := len(lc.out) > 0 && now.Sub(lc.outSince) > writeTimeout
		lc.mu.Unlock()
		switch {
		case stuck:
			lc.log.Warn("closing connection: the client has not taken its replies", "for", writeTimeout)
			stale = append(stale, lc)
		case now.Sub(lc.lastRead) > idleTimeout:
			lc.log.Info("closing idle connection", "idle", idleTimeout)
			stale = append(stale, lc)
		}
	}
	l.mu.Unlock()
	for _, lc := range stale {
		l.close(lc, false)
	}
}

// loopFor picks the loop of the next connection.
func loopFor(loops []*loop, n *atomic.Uint64) *loop {
	return loops[n.Add(1)%uint64(len(loops))]
}
