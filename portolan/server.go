// Package portolan is the SVP mapping server: it answers overlay hosts'
// VL2 lookups (which host holds a MAC), VL3 lookups (which MAC holds an
// IP) and log requests (which cached answers to forget) from a store.
package portolan

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"overlaynet/ether"
	"overlaynet/portolan/store"
	"overlaynet/svpwire"
)

// Limits of one connection.
const (
	// maxInFlight bounds the requests of one connection being answered at
	// once by store queries when Lookups is nil; replies may leave in any
	// order.
	maxInFlight = 64
	// idleTimeout closes a connection that sends nothing (hosts poll
	// their log every second or so, so a live host is never this idle).
	idleTimeout = 10 * time.Minute
	// maxLogBytes caps the entries of one LOG_ACK whatever a host asks.
	maxLogBytes = 64 << 10
	// maxBody is the largest request body accepted: LOG_RM with 4,000
	// ids. Anything larger closes the connection.
	maxBody = 64 << 10
	// workQueue is how many requests that do I/O may wait for a
	// connection's worker (with Lookups set) before its reader stops
	// reading.
	workQueue = 16
	// maxHeld bounds the LOG_REQs held at once on one connection; more
	// are answered at once.
	maxHeld = 8
	// batchSize is the reader's write buffer: the replies to a full read
	// buffer of the smallest requests (4 KiB of PINGs) fit.
	batchSize = 8 << 10
	// writeTimeout closes a connection whose client does not take its
	// replies.
	writeTimeout = 30 * time.Second
	// requestTimeout bounds the store queries of one request.
	requestTimeout = 10 * time.Second
)

// DefaultLogHold is the hold a server given Lookups should use: well
// inside the illumos client's 30 s no-progress timeout (SVP.md).
const DefaultLogHold = 5 * time.Second

// batchPool holds the readers' reply buffers between writes.
var batchPool = sync.Pool{New: func() any {
	b := make([]byte, 0, batchSize)
	return &b
}}

// Server serves SVP from a store.
//
// SVP has no authentication, so by default a connection may ask for a
// host's log (LOG_REQ) or remove entries from it (LOG_RM) only when it
// comes from that host's underlay IP or from one of the host's registered
// source addresses (store.Store.SetHost); otherwise any client could claim
// another host's IP and drain its log, and that host would never forget
// its stale answers. A LOG_RM is refused whole when any of its ids is in
// the log of a host the connection may not act for. A refusal is answered
// with status FATAL (what an unknown host gets, and what illumos and our
// plugin retry later), logged and counted (Refused).
type Server struct {
	// Store answers LOG_REQ, LOG_RM and BULK_REQ, and everything else
	// when Lookups is nil.
	Store store.Store
	// Lookups, when set, answers VL2_REQ and VL3_REQ and the ownership
	// checks' question of which hosts a source address may act for,
	// without touching the store, and tells when a host's log grows, so
	// that LOG_REQs can be held (LogHold).
	Lookups Lookups
	// LogHold, with Lookups set, is how long a LOG_REQ that finds the log
	// empty is held for an entry to arrive (SVP.md allows it) before it
	// is answered empty. 0 answers at once, as Triton does;
	// DefaultLogHold is what a server should use. While one is held, the
	// connection's other requests are answered.
	LogHold time.Duration
	Log     *slog.Logger
	// NoOwnershipCheck answers LOG_REQ and LOG_RM from any source
	// address, trusting the underlay IP a client claims.
	NoOwnershipCheck bool

	conns    atomic.Int64
	requests atomic.Uint64
	refused  atomic.Uint64
	// closedInFlight counts connections their client closed while
	// requests on them were unanswered: Triton's portolan dies writing
	// into such a socket, so clients should not do it. LOG_REQs do not
	// count when they may be held: a client keeps one outstanding.
	closedInFlight atomic.Uint64

	batchOnce sync.Once
	reads     batcher[logRead]
	holds     holds
	removals  remover
}

// logRead is one LOG_REQ's read, waiting for the batch that reads it.
type logRead struct {
	store.LogRead
	done chan struct{}
}

// maxReadBatch bounds the logs one batch reads, so that no batch is
// long.
const maxReadBatch = 1_000

// batchLogs is the store's capability of reading many logs at once.
type batchLogs interface {
	Logs(ctx context.Context, reads []store.LogRead) error
}

// initBatches sets up the batcher, once.
func (s *Server) initBatches() {
	s.batchOnce.Do(func() {
		s.reads = batcher[logRead]{max: maxReadBatch,
			weight: func(*logRead) int { return 1 },
			run: func(batch []*logRead) {
				ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
				defer cancel()
				reads := make([]store.LogRead, len(batch))
				for i, r := range batch {
					reads[i] = r.LogRead
				}
				s.readLogs(ctx, reads)
				for i, r := range batch {
					r.LogRead = reads[i]
					close(r.done)
				}
			}}
	})
}

// readLogs does many log reads, in a few queries when the store can,
// one each otherwise; each read gets its entries or its error.
func (s *Server) readLogs(ctx context.Context, reads []store.LogRead) {
	b, ok := s.Store.(batchLogs)
	if !ok {
		for i := range reads {
			reads[i].Entries, reads[i].Err = s.Store.Log(ctx, reads[i].IP, reads[i].MaxBytes)
		}
		return
	}
	if err := b.Logs(ctx, reads); err != nil {
		for i := range reads {
			reads[i].Err = err
		}
	}
}

// storeLog reads a host's log, with the reads that arrive meanwhile when
// the store can read many at once, leaving out the entries being
// removed; whole says the read held the whole log.
func (s *Server) storeLog(ctx context.Context, ip netip.Addr, maxBytes int) (entries []store.LogEntry, whole bool, err error) {
	since := s.readBegin()
	defer s.readEnd(since)
	if _, ok := s.Store.(batchLogs); !ok {
		entries, err = s.Store.Log(ctx, ip, maxBytes)
	} else {
		s.initBatches()
		r := &logRead{LogRead: store.LogRead{IP: ip, MaxBytes: maxBytes}, done: make(chan struct{})}
		s.reads.add(r)
		select {
		case <-r.done:
			entries, err = r.Entries, r.Err
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
	if err != nil {
		return nil, false, err
	}
	entries, whole = s.unremoved(entries, maxBytes, since)
	return entries, whole, nil
}

// Serve accepts connections until ctx ends or ln is closed, then closes
// the connections it accepted and returns once they are done. Other
// accept errors that are temporary (running out of file descriptors, a
// connection aborted before it was accepted) are logged and retried after
// a pause: they must not stop the server.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		defer cancel()
		s.drainRemovals(ctx)
	}()
	var wg sync.WaitGroup
	defer wg.Wait() // runs after cancel below: connections end first
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	var pause time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// EMFILE, ECONNABORTED and the like say Temporary (the
			// method is deprecated for being vague, but it is what
			// tells these from a dead listener).
			var te interface{ Temporary() bool }
			if !errors.As(err, &te) || !te.Temporary() {
				return err
			}
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			s.logger().Warn("accept failed; retrying", "err", err, "pause", pause)
			select {
			case <-time.After(pause):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		pause = 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(ctx, c)
		}()
	}
}

// request is a decoded request that is answered off the reader: one that
// does I/O.
type request struct {
	op  svpwire.Op
	id  uint32
	msg any
	// counted says the request counts as unanswered (see conn.unanswered)
	// until its reply is written.
	counted bool
}

// conn is the state of one connection that its reader shares with the
// goroutines answering requests that do I/O.
type conn struct {
	s      *Server
	c      net.Conn
	log    *slog.Logger
	src    netip.Addr
	ctx    context.Context
	cancel context.CancelFunc
	// wmu serialises writes: the reader's batches and the replies of the
	// worker, the store lookups and the held LOG_REQs.
	wmu sync.Mutex
	// unanswered counts the requests read and not yet written, except
	// those answered by the reader itself (it writes them before it
	// reads again) and, when LOG_REQs may be held, LOG_REQs: a client
	// that keeps one outstanding closes with it unanswered, as it should.
	unanswered atomic.Int64
	// released is closed when the client has closed its side cleanly:
	// held LOG_REQs are answered at once, and no more are held.
	released chan struct{}
	held     atomic.Int32   // LOG_REQs being held
	tasks    sync.WaitGroup // the goroutines answering requests, and held LOG_REQs
	// raw writes without blocking (send), when the connection has a
	// file descriptor.
	raw syscall.RawConn
	// holding and holdState are the server's holds registry's, under
	// its lock: the LOG_REQs held, and whether more may be.
	holding   []*held
	holdState int
	// trip is when the holds' deliverer last answered this connection,
	// in Unix nanoseconds, until its client sends its next LOG_REQ or
	// LOG_RM (0: none out).
	trip atomic.Int64
	// queued counts the requests given to the worker and not yet done:
	// while it is 0, the reader may answer LOG_REQ and LOG_RM itself
	// when that needs no store read (quickLog).
	queued atomic.Int64

	// logMu guards what spares the store a query on the log path.
	logMu sync.Mutex
	// emptyIP is the host whose log this connection last read empty,
	// and emptySig that host's log signal taken before the read: while
	// the signal is the same and open, nothing was appended since (entries
	// are only removed), so the log is still empty and a LOG_REQ for it
	// is held without reading the store. An idle host's LOG_REQ every
	// LogHold costs no query.
	emptyIP  netip.Addr
	emptySig <-chan struct{}
	// drainIP's log held only the ids in drainLeft when drainSig was
	// taken: once LOG_RMs have removed them all, it is known empty.
	drainIP   netip.Addr
	drainSig  <-chan struct{}
	drainLeft map[[16]byte]struct{}
	// given holds the ids of the entries this connection was given in
	// LOG_ACKs, which passed the ownership check: a LOG_RM of those only
	// needs no query of their owners.
	given map[[16]byte]struct{}
}

// maxGiven bounds conn.given: past it, LOG_RMs are checked in the store.
const maxGiven = 1 << 16

// knownEmpty reports whether the log of ip is known empty: read empty on
// this connection with sig, the host's current signal, still open.
func (cn *conn) knownEmpty(ip netip.Addr, sig <-chan struct{}) bool {
	cn.logMu.Lock()
	same := cn.emptyIP == ip && cn.emptySig == sig
	cn.logMu.Unlock()
	if !same {
		return false
	}
	select {
	case <-sig:
		return false
	default:
		return true
	}
}

// readLog reads the log a LOG_REQ asks for; whole says it is all of it.
// sig, when not nil, is the host's log signal taken before the read (see
// noteRead). A read that found only entries being removed, with more
// beyond, writes the removals and reads again: the client would be
// given nothing until they are.
func (cn *conn) readLog(ctx context.Context, m svpwire.LogReq, sig <-chan struct{}) (entries []store.LogEntry, whole bool, err error) {
	limit := min(int(m.Count), maxLogBytes)
	entries, whole, err = cn.s.storeLog(ctx, m.IP, limit)
	// (Whether removals are pending now says nothing: the one that hid
	// this read's entries may have committed since.)
	if err == nil && len(entries) == 0 && !whole {
		if rmErr := cn.s.removeSome(); rmErr == nil {
			entries, whole, err = cn.s.storeLog(ctx, m.IP, limit)
		}
	}
	if err == nil && sig != nil {
		cn.noteRead(m, sig, entries, whole)
	}
	return entries, whole, err
}

// noteRead records what a read of the log a LOG_REQ asks for found:
// sig is the host's log signal taken before the read. If the read held
// the whole log (whole), the log is known empty until sig closes, at
// once when it was empty, or once the client has removed what it was
// given.
func (cn *conn) noteRead(m svpwire.LogReq, sig <-chan struct{}, entries []store.LogEntry, whole bool) {
	if !whole {
		return // there may be more
	}
	cn.logMu.Lock()
	defer cn.logMu.Unlock()
	if len(entries) == 0 {
		cn.emptyIP, cn.emptySig = m.IP, sig
		return
	}
	cn.drainIP, cn.drainSig = m.IP, sig
	cn.drainLeft = make(map[[16]byte]struct{}, len(entries))
	for _, e := range entries {
		cn.drainLeft[e.ID] = struct{}{}
	}
}

// removed records that ids are gone from the store's log.
func (cn *conn) removed(ids [][16]byte) {
	cn.logMu.Lock()
	defer cn.logMu.Unlock()
	for _, id := range ids {
		delete(cn.given, id)
		delete(cn.drainLeft, id)
	}
	if cn.drainIP.IsValid() && len(cn.drainLeft) == 0 {
		cn.emptyIP, cn.emptySig = cn.drainIP, cn.drainSig
		cn.drainIP, cn.drainSig, cn.drainLeft = netip.Addr{}, nil, nil
	}
}

// allGiven reports whether every id was given on this connection.
func (cn *conn) allGiven(ids [][16]byte) bool {
	cn.logMu.Lock()
	defer cn.logMu.Unlock()
	for _, id := range ids {
		if _, ok := cn.given[id]; !ok {
			return false
		}
	}
	return true
}

// serveConn answers one connection. A malformed frame, or a message a
// client must not send, closes this connection only.
//
// The connection's goroutine reads frames and, with Lookups set, answers
// PING, VL2_REQ and VL3_REQ itself, appending the replies to one buffer
// that it writes, in one call, before any read that would block. Requests
// that do I/O go to one worker goroutine (with Lookups) or to a goroutine
// each (without: every lookup is a store query), bounded either way so
// that a client that sends faster than they are answered is read no
// further.
func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	s.conns.Add(1)
	defer s.conns.Add(-1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	context.AfterFunc(ctx, func() { c.Close() }) // at the latest when cancel runs on return
	cn := &conn{s: s, c: c, log: s.logger().With("peer", c.RemoteAddr().String()), src: sourceAddr(c),
		ctx: ctx, cancel: cancel, released: make(chan struct{})}
	if sc, ok := c.(syscall.Conn); ok {
		cn.raw, _ = sc.SyscallConn()
	}
	cn.log.Debug("connection opened")

	lk := s.Lookups
	var queue chan request
	var slots chan struct{}
	if lk != nil {
		queue = make(chan request, workQueue)
		cn.tasks.Add(1)
		go cn.work(queue)
	} else {
		slots = make(chan struct{}, maxInFlight)
	}
	holdLogs := lk != nil && s.LogHold > 0
	r := svpwire.NewReader(c, maxBody)
	// The reader's replies, from batchPool while there are any: an idle
	// connection (most of 10,000 hosts' at any moment) holds no buffer.
	var bp *[]byte
	var batch []byte
	var answered uint64 // by the reader, since its last write
	// flush writes the reader's batch; false when the connection failed.
	flush := func() bool {
		s.requests.Add(answered)
		answered = 0
		if bp == nil {
			return true
		}
		ok := len(batch) == 0 || cn.write(batch, false)
		*bp = batch[:0]
		batchPool.Put(bp)
		bp, batch = nil, nil
		return ok
	}
	// reserve makes sure there is a batch to append to.
	reserve := func() {
		if bp == nil {
			bp = batchPool.Get().(*[]byte)
			batch = *bp
		}
	}
	clean := false
loop:
	for {
		if !r.Ready() {
			// The next read may block: what is answered goes out now.
			if !flush() {
				break loop
			}
			c.SetReadDeadline(time.Now().Add(idleTimeout))
		}
		f, err := r.Next()
		if err == io.EOF {
			// The client closed its side cleanly (it may have shut down
			// only its writing half): answer what it sent before closing.
			clean = true
		}
		closedByClient := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
		if closedByClient && ctx.Err() == nil {
			if n := cn.unanswered.Load(); n > 0 {
				s.closedInFlight.Add(1)
				cn.log.Warn("client closed a connection with requests in flight", "requests", n)
			}
		}
		if clean {
			break loop
		}
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				cn.log.Warn("closing connection: bad frame", "err", err)
			}
			break loop
		}
		if lk != nil {
			// The hot path: answered here, without an allocation.
			switch f.Op {
			case svpwire.OpVL2Req:
				if m, err := svpwire.DecodeVL2Req(f.Body); err == nil {
					reserve()
					batch = appendVL2(batch, lk, m, f.ID)
					answered++
					continue
				}
			case svpwire.OpVL3Req:
				if m, err := svpwire.DecodeVL3Req(f.Body); err == nil {
					reserve()
					batch = appendVL3(batch, lk, m, f.ID)
					answered++
					continue
				}
			}
		}
		if holdLogs && (f.Op == svpwire.OpLogReq || f.Op == svpwire.OpLogRm) {
			s.holds.endTrip(cn)
		}
		if holdLogs && cn.queued.Load() == 0 {
			reserve()
			var ok bool
			if batch, ok = cn.quickLog(f, batch); ok {
				answered++
				continue
			}
		}
		if f.Op == svpwire.OpPing && len(f.Body) == 0 {
			reserve()
			batch = svpwire.AppendFrame(batch, svpwire.OpPong, f.ID, nil)
			answered++
			continue
		}
		req, err := decodeRequest(f)
		if err != nil {
			cn.log.Warn("closing connection: bad request", "op", f.Op.String(), "err", err)
			break loop
		}
		s.requests.Add(1)
		req.counted = !(holdLogs && req.op == svpwire.OpLogReq)
		if req.counted {
			cn.unanswered.Add(1)
		}
		if queue != nil {
			cn.queued.Add(1)
			select {
			case queue <- req:
				continue
			default:
			}
			// The worker is behind: send what is answered, then wait.
			if !flush() {
				break loop
			}
			select {
			case queue <- req:
				continue
			case <-ctx.Done():
				break loop
			}
		}
		select {
		case slots <- struct{}{}:
		default:
			if !flush() {
				break loop
			}
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				break loop
			}
		}
		cn.tasks.Add(1)
		go func() {
			defer cn.tasks.Done()
			defer func() { <-slots }()
			cn.reply(cn.answer(req), req.counted)
		}()
	}
	if clean {
		close(cn.released)
		if holdLogs {
			s.holds.release(cn)
		}
		if queue != nil {
			close(queue) // the worker answers what is queued, then returns
		}
	} else {
		cancel() // drop what is in flight and close now
		if holdLogs {
			s.holds.drop(cn)
		}
	}
	cn.tasks.Wait()
	if holdLogs {
		s.holds.endTrip(cn)
	}
	cn.log.Debug("connection closed")
}

// write writes b, one reply or a batch of them, under the write lock with
// a deadline. A reply that counted as unanswered stops counting as it is
// written: the client can have it only after this. false when the write
// failed (the connection is then closing).
func (cn *conn) write(b []byte, counted bool) bool {
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	if counted {
		cn.unanswered.Add(-1)
	}
	return cn.writeLocked(b)
}

// writeLocked writes b with cn.wmu held.
func (cn *conn) writeLocked(b []byte) bool {
	if cn.ctx.Err() != nil {
		return false
	}
	cn.c.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := cn.c.Write(b); err != nil {
		cn.cancel()
		return false
	}
	return true
}

// send writes b as write does, without blocking the caller: what the
// socket does not take at once (or all of it, when another write is
// under way) is written by a goroutine of the connection. The deliverer
// of held LOG_REQs writes to thousands of connections with it, and a
// client that does not read must delay no other. The caller must be one
// of the connection's tasks, or its reader.
func (cn *conn) send(b []byte, counted bool) {
	if cn.raw != nil && cn.wmu.TryLock() {
		if counted {
			cn.unanswered.Add(-1)
			counted = false
		}
		if cn.ctx.Err() != nil {
			cn.wmu.Unlock()
			return
		}
		// The raw write heeds the deadline too: one long past (set by
		// the last write) would fail it.
		cn.c.SetWriteDeadline(time.Now().Add(writeTimeout))
		n := 0
		var werr error
		err := cn.raw.Write(func(fd uintptr) bool {
			n, werr = unix.Write(int(fd), b)
			return true // one try: never wait for the socket here
		})
		switch {
		case err == nil && werr == nil && n == len(b):
			cn.wmu.Unlock()
			return
		case err != nil || (werr != nil && werr != unix.EAGAIN && werr != unix.EINTR):
			cn.cancel()
			cn.wmu.Unlock()
			return
		}
		rest := b[max(n, 0):]
		cn.tasks.Add(1)
		go func() {
			defer cn.tasks.Done()
			defer cn.wmu.Unlock() // taken by the caller, handed over
			cn.writeLocked(rest)
		}()
		return
	}
	cn.tasks.Add(1)
	go func() {
		defer cn.tasks.Done()
		cn.write(b, counted)
	}()
}

// reply writes the reply to a request answered off the reader.
func (cn *conn) reply(b []byte, counted bool) { cn.write(b, counted) }

// work answers the requests of a connection with Lookups set that do I/O,
// in order, until the queue is closed or the connection ends.
func (cn *conn) work(queue <-chan request) {
	defer cn.tasks.Done()
	for {
		select {
		case req, ok := <-queue:
			if !ok {
				return
			}
			if m, ok := req.msg.(svpwire.LogReq); ok {
				cn.logReq(req, m)
			} else {
				cn.reply(cn.answer(req), req.counted)
			}
			cn.queued.Add(-1)
		case <-cn.ctx.Done():
			return
		}
	}
}

// logReq answers a LOG_REQ with Lookups set: when the log is empty and
// holding is on, it is held (up to maxHeld at once on the connection; the
// server's registry, holds, answers it) until an entry arrives, LogHold
// passes or the client closes its side. The worker goes on meanwhile.
func (cn *conn) logReq(req request, m svpwire.LogReq) {
	s := cn.s
	ctx, cancel := context.WithTimeout(cn.ctx, requestTimeout)
	defer cancel()
	if b := cn.checkLogReq(ctx, req.id, m); b != nil {
		cn.reply(b, req.counted)
		return
	}
	// With room for the largest entry, an empty read is an empty log;
	// with less, nothing may ever fit: no use holding.
	hold := s.LogHold > 0 && m.Count >= svpwire.LogVL3Size && cn.held.Load() < maxHeld
	select {
	case <-cn.released:
		hold = false
	default:
	}
	var signal <-chan struct{}
	if hold {
		// Before the read: an append after it closes this channel.
		signal = s.Lookups.LogSignal(m.IP)
	}
	if !hold || !cn.knownEmpty(m.IP, signal) {
		entries, whole, err := cn.readLog(ctx, m, signal)
		// Held only when the log is all read and empty.
		if err != nil || len(entries) > 0 || !whole || !hold {
			cn.reply(cn.logAck(req.id, m, entries, err), req.counted)
			return
		}
	}
	cn.held.Add(1)
	s.holds.hold(cn, req, m, signal)
}

// appendVL2 appends the answer to a VL2_REQ from lk.
func appendVL2(dst []byte, lk Lookups, m svpwire.VL2Req, id uint32) []byte {
	h, ok := lk.VL2(m.VNetID, ether.MAC(m.MAC))
	if !ok {
		return svpwire.VL2Ack{Status: svpwire.StatusNotFound}.AppendFrame(dst, id)
	}
	return svpwire.VL2Ack{Status: svpwire.StatusOK, Port: h.Port, Addr: h.IP}.AppendFrame(dst, id)
}

// appendVL3 appends the answer to a VL3_REQ from lk.
func appendVL3(dst []byte, lk Lookups, m svpwire.VL3Req, id uint32) []byte {
	if m.Type != svpwire.L3IPv4 && m.Type != svpwire.L3IPv6 {
		return svpwire.VL3Ack{Status: svpwire.StatusBadL3Type}.AppendFrame(dst, id)
	}
	mac, h, ok := lk.VL3(m.VNetID, m.IP)
	if !ok {
		return svpwire.VL3Ack{Status: svpwire.StatusNotFound}.AppendFrame(dst, id)
	}
	return svpwire.VL3Ack{Status: svpwire.StatusOK, MAC: mac, Port: h.Port, Addr: h.IP}.AppendFrame(dst, id)
}

// decodeRequest checks a frame is a request a client may send and decodes
// its body (which is only valid until the next frame is read).
func decodeRequest(f svpwire.Frame) (request, error) {
	r := request{op: f.Op, id: f.ID}
	var err error
	switch f.Op {
	case svpwire.OpPing:
		if len(f.Body) != 0 {
			err = errors.New("PING with a body")
		}
	case svpwire.OpVL2Req:
		r.msg, err = svpwire.DecodeVL2Req(f.Body)
	case svpwire.OpVL3Req:
		r.msg, err = svpwire.DecodeVL3Req(f.Body)
	case svpwire.OpLogReq:
		r.msg, err = svpwire.DecodeLogReq(f.Body)
	case svpwire.OpLogRm:
		r.msg, err = svpwire.DecodeLogRm(f.Body)
	case svpwire.OpBulkReq:
		r.msg, err = svpwire.DecodeBulkReq(f.Body)
	default:
		// Replies, SHOOTDOWN and unknown ops have no answer.
		err = errors.New("not a request a client sends")
	}
	return r, err
}

// sourceAddr is the address a connection comes from, IPv4-mapped
// addresses (a dual-stack listener's IPv4 clients) as IPv4; invalid when
// the connection is not over IP.
func sourceAddr(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	return ap.Addr().Unmap()
}

// mayReadLog reports whether a connection from src may ask for the log
// of the host with underlay IP claimed.
func (s *Server) mayReadLog(ctx context.Context, src, claimed netip.Addr) (bool, error) {
	if s.NoOwnershipCheck || claimed.Unmap() == src {
		return true, nil // the common case costs no query
	}
	hosts, err := s.hostsFrom(ctx, src)
	if err != nil {
		return false, err
	}
	for _, h := range hosts {
		if h.IP.Unmap() == claimed.Unmap() {
			return true, nil
		}
	}
	return false, nil
}

// hostsFrom returns the hosts a connection from src may act for, from
// Lookups when set.
func (s *Server) hostsFrom(ctx context.Context, src netip.Addr) ([]store.Host, error) {
	if s.Lookups != nil {
		return s.Lookups.HostsFrom(src), nil
	}
	return s.Store.HostsFrom(ctx, src)
}

// foreignOwners returns the hosts owning some of ids that a connection
// from src may not act for.
func (s *Server) foreignOwners(ctx context.Context, src netip.Addr, ids [][16]byte) ([]string, error) {
	if s.NoOwnershipCheck || len(ids) == 0 {
		return nil, nil
	}
	owners, err := s.Store.LogOwners(ctx, ids)
	if err != nil || len(owners) == 0 {
		return nil, err
	}
	hosts, err := s.hostsFrom(ctx, src)
	if err != nil {
		return nil, err
	}
	var foreign []string
	for _, o := range owners {
		if !slices.ContainsFunc(hosts, func(h store.Host) bool { return h.ID == o }) {
			foreign = append(foreign, o)
		}
	}
	return foreign, nil
}

// answer computes the reply frame to a request that does I/O.
func (cn *conn) answer(r request) []byte {
	s, log := cn.s, cn.log
	ctx, cancel := context.WithTimeout(cn.ctx, requestTimeout)
	defer cancel()
	switch m := r.msg.(type) {
	case nil: // PING
		return svpwire.AppendFrame(nil, svpwire.OpPong, r.id, nil)
	case svpwire.VL2Req:
		h, ok, err := s.Store.VL2(ctx, m.VNetID, ether.MAC(m.MAC))
		ack := svpwire.VL2Ack{Status: svpwire.StatusOK, Port: h.Port, Addr: h.IP}
		switch {
		case err != nil:
			log.Error("VL2 lookup failed", "err", err)
			ack = svpwire.VL2Ack{Status: svpwire.StatusFatal}
		case !ok:
			ack = svpwire.VL2Ack{Status: svpwire.StatusNotFound}
		}
		return ack.AppendFrame(nil, r.id)
	case svpwire.VL3Req:
		if m.Type != svpwire.L3IPv4 && m.Type != svpwire.L3IPv6 {
			return svpwire.VL3Ack{Status: svpwire.StatusBadL3Type}.AppendFrame(nil, r.id)
		}
		mac, h, ok, err := s.Store.VL3(ctx, m.VNetID, m.IP)
		ack := svpwire.VL3Ack{Status: svpwire.StatusOK, MAC: mac, Port: h.Port, Addr: h.IP}
		switch {
		case err != nil:
			log.Error("VL3 lookup failed", "err", err)
			ack = svpwire.VL3Ack{Status: svpwire.StatusFatal}
		case !ok:
			ack = svpwire.VL3Ack{Status: svpwire.StatusNotFound}
		}
		return ack.AppendFrame(nil, r.id)
	case svpwire.LogReq:
		if b := cn.checkLogReq(ctx, r.id, m); b != nil {
			return b
		}
		entries, _, err := s.storeLog(ctx, m.IP, min(int(m.Count), maxLogBytes))
		return cn.logAck(r.id, m, entries, err)
	case svpwire.LogRm:
		var foreign []string
		var err error
		if !cn.allGiven(m.IDs) {
			foreign, err = s.foreignOwners(ctx, cn.src, m.IDs)
		}
		if err != nil {
			log.Error("log removal failed", "err", err)
			return svpwire.LogRmAck{Status: svpwire.StatusFatal}.AppendFrame(nil, r.id)
		}
		if len(foreign) > 0 {
			log.Warn("refused LOG_RM: entries in the log of a host the connection does not come from (register its address with portolan add-host --source)",
				"hosts", strings.Join(foreign, ","), "source", cn.src.String(), "ids", len(m.IDs), "refused_total", s.refused.Add(1))
			return svpwire.LogRmAck{Status: svpwire.StatusFatal}.AppendFrame(nil, r.id)
		}
		s.forget(m.IDs)
		cn.removed(m.IDs)
		return svpwire.LogRmAck{Status: svpwire.StatusOK}.AppendFrame(nil, r.id)
	case svpwire.BulkReq:
		st := svpwire.StatusFatal // bulk transfers are not defined in version 1
		if m.Type != svpwire.BulkVL2 && m.Type != svpwire.BulkVL3 {
			st = svpwire.StatusBadBulk
		}
		return svpwire.BulkAck{Status: st, Type: m.Type}.AppendFrame(nil, r.id)
	}
	return svpwire.AppendFrame(nil, svpwire.OpPong, r.id, nil)
}

// checkLogReq checks the connection may read the log a LOG_REQ asks
// for; when not (or when that cannot be told) it returns the reply.
func (cn *conn) checkLogReq(ctx context.Context, id uint32, m svpwire.LogReq) []byte {
	ok, err := cn.s.mayReadLog(ctx, cn.src, m.IP)
	if err != nil {
		cn.log.Error("log request failed", "err", err)
		return svpwire.LogAck{Status: svpwire.StatusFatal}.AppendFrame(nil, id)
	}
	if !ok {
		cn.log.Warn("refused LOG_REQ: the connection does not come from the claimed host (register its address with portolan add-host --source)",
			"claimed_ip", m.IP.Unmap().String(), "source", cn.src.String(), "refused_total", cn.s.refused.Add(1))
		return svpwire.LogAck{Status: svpwire.StatusFatal}.AppendFrame(nil, id)
	}
	return nil
}

// logAck is the reply to a LOG_REQ whose log read returned entries, err.
func (cn *conn) logAck(id uint32, m svpwire.LogReq, entries []store.LogEntry, err error) []byte {
	if err != nil {
		if !errors.Is(err, store.ErrUnknownHost) {
			cn.log.Error("log request failed", "err", err)
		} else {
			cn.log.Warn("log request from an unknown host", "underlay_ip", m.IP.String())
		}
		return svpwire.LogAck{Status: svpwire.StatusFatal}.AppendFrame(nil, id)
	}
	ack := svpwire.LogAck{Status: svpwire.StatusOK}
	if len(entries) > 0 {
		cn.logMu.Lock()
		if cn.given == nil {
			cn.given = make(map[[16]byte]struct{})
		}
		for _, e := range entries {
			if len(cn.given) < maxGiven {
				cn.given[e.ID] = struct{}{}
			}
		}
		cn.logMu.Unlock()
	}
	for _, e := range entries {
		ack.Entries = append(ack.Entries, svpwire.LogEntry{Type: e.Type, ID: e.ID, MAC: e.MAC,
			IP: e.IP, VLAN: e.VLAN, VNetID: e.VNetID})
	}
	return ack.AppendFrame(nil, id)
}

// logger returns s.Log, or a logger that discards when it is nil.
func (s *Server) logger() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

// Connections returns the number of open connections.
func (s *Server) Connections() int64 { return s.conns.Load() }

// ClosedInFlight returns how many connections their client closed while
// requests on them were unanswered.
func (s *Server) ClosedInFlight() uint64 { return s.closedInFlight.Load() }

// Requests returns the number of requests answered so far.
func (s *Server) Requests() uint64 { return s.requests.Load() }

// Refused returns the number of LOG_REQ and LOG_RM requests refused
// because the connection may not act for the host they concern.
func (s *Server) Refused() uint64 { return s.refused.Load() }
