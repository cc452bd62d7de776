package svp

import (
	"context"
	"errors"

	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"overlaynet/encap"
	"overlaynet/ether"
	"overlaynet/prop"
	"overlaynet/search"
	"overlaynet/svpwire"
)

// testTimings are the plugin's timings shrunk about twentyfold, with the
// same proportions: retry elsewhere after an attempt, DEGRADED after a
// stall, close only after giveUp.
var testTimings = timings{
	resolve:       time.Hour,
	attempt:       75 * time.Millisecond,
	stallAfter:    150 * time.Millisecond,
	giveUp:        1500 * time.Millisecond,
	tick:          10 * time.Millisecond,
	logDelay:      time.Hour, // no log polling unless a test wants it
	logBackoffMax: 800 * time.Millisecond,
	pollInterval:  25 * time.Millisecond,
	logHold:       250 * time.Millisecond,
	logCall:       time.Second,
	dialTimeout:   time.Second,
	minBackoff:    10 * time.Millisecond,
	maxBackoff:    100 * time.Millisecond,
}

// fakeHost is a search.Host that records the overlay's state and the
// MACs it is told to forget.
type fakeHost struct {
	mu          sync.Mutex
	reason      string // "" when ONLINE
	history     []string
	restores    int
	invalidated []invalidation
}

type invalidation struct {
	mac ether.MAC
	at  time.Time
}

func (h *fakeHost) Invalidate(m ether.MAC) {
	h.mu.Lock()
	h.invalidated = append(h.invalidated, invalidation{m, time.Now()})
	h.mu.Unlock()
}

// invalidatedAt is when mac was first invalidated; ok is false if never.
func (h *fakeHost) invalidatedAt(mac ether.MAC) (at time.Time, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, v := range h.invalidated {
		if v.mac == mac {
			return v.at, true
		}
	}
	return time.Time{}, false
}

func (h *fakeHost) Learn(search.Answer)                    {}
func (h *fakeHost) Announce(uint16, netip.Addr, ether.MAC) {}
func (h *fakeHost) Degrade(reason string) {
	h.mu.Lock()
	h.reason = reason
	h.history = append(h.history, reason)
	h.mu.Unlock()
}
func (h *fakeHost) Restore() {
	h.mu.Lock()
	h.reason = ""
	h.restores++
	h.mu.Unlock()
}

func (h *fakeHost) state() (string, []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.reason, append([]string(nil), h.history...)
}

// waitFor waits until cond holds for the current reason, failing after d.
func (h *fakeHost) waitFor(t *testing.T, d time.Duration, what string, cond func(reason string) bool) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		r, hist := h.state()
		if cond(r) {
			return r
		}
		if time.Now().After(deadline) {
			hist = hist[max(0, len(hist)-5):]
			t.Fatalf("waited %v for %s; reason now %q, last reasons %q", d, what, r, hist)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func online(r string) bool { return r == "" }

func degradedWith(subs ...string) func(string) bool {
	return func(r string) bool {
		if r == "" {
			return false
		}
		for _, s := range subs {
			if !strings.Contains(r, s) {
				return false
			}
		}
		return true
	}
}

// fakeServer is an SVP server on 127.0.0.1 that answers every lookup
// (VL2: 192.0.2.1:4789), an empty log, and injects the faults its hook
// asks for.
type fakeServer struct {
	t    *testing.T
	ln   net.Listener
	addr netip.AddrPort

	// hook, if set, sees each frame first; it returns true when it
	// dealt with it (answered, closed...).
	hook func(s *fakeServer, sc *serverConn, f svpwire.Frame) bool
	// gate, while open (non-nil and not closed), holds every reply.
	gate  chan struct{}
	delay time.Duration // before each reply

	mu       sync.Mutex
	conns    []*serverConn
	logReqs  []time.Time
	accepted []time.Time

	stopped bool          // under mu
	done    chan struct{} // closed by stop

	accepts atomic.Int32
	// closedInFlight counts connections the client closed while
	// requests on them were unanswered.
	closedInFlight atomic.Int32
	wg             sync.WaitGroup
}

type serverConn struct {
	net.Conn
	wmu      sync.Mutex
	inflight atomic.Int32
	closing  atomic.Bool // the server closes it
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{t: t, ln: ln, addr: netip.MustParseAddrPort(ln.Addr().String()), done: make(chan struct{})}
	s.serve(ln)
	t.Cleanup(s.stop)
	return s
}

func (s *fakeServer) serve(ln net.Listener) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepts.Add(1)
			sc := &serverConn{Conn: c}
			s.mu.Lock()
			s.accepted = append(s.accepted, time.Now())
			s.conns = append(s.conns, sc)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.handle(sc)
			}()
		}
	}()
}

// crash closes every connection and the listener, and listens again on
// the same port after down (a supervisor restarting the process).
func (s *fakeServer) crash(down time.Duration) {
	s.mu.Lock()
	ln := s.ln
	for _, c := range s.conns {
		c.closing.Store(true)
		c.Close()
	}
	s.conns = nil
	s.mu.Unlock()
	ln.Close()
	// Counted in wg (crash runs in a handler, so the count is not 0):
	// stop waits for it, and cuts its wait short.
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case <-time.After(down):
		case <-s.done:
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.stopped {
			return
		}
		nl, err := net.Listen("tcp", s.addr.String())
		if err != nil {
			s.t.Errorf("listen again on %s: %v", s.addr, err)
			return
		}
		s.ln = nl
		s.serve(nl)
	}()
}

func (s *fakeServer) stop() {
	s.mu.Lock()
	if !s.stopped {
		s.stopped = true
		close(s.done)
	}
	s.ln.Close()
	for _, c := range s.conns {
		c.closing.Store(true)
		c.Close()
	}
	if s.gate != nil {
		select {
		case <-s.gate:
		default:
			close(s.gate)
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *fakeServer) handle(sc *serverConn) {
	r := svpwire.NewReader(sc, 0)
	for {
		f, err := r.Next()
		if err != nil {
			if !sc.closing.Load() && sc.inflight.Load() > 0 {
				s.closedInFlight.Add(1)
			}
			sc.Close()
			return
		}
		if f.Op == svpwire.OpLogReq {
			s.mu.Lock()
			s.logReqs = append(s.logReqs, time.Now())
			s.mu.Unlock()
		}
		if s.hook != nil && s.hook(s, sc, f) {
			continue
		}
		sc.inflight.Add(1)
		out := answer(f)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.mu.Lock()
			gate, delay := s.gate, s.delay
			s.mu.Unlock()
			if gate != nil {
				<-gate
			}
			time.Sleep(delay)
			sc.wmu.Lock()
			sc.Write(out)
			sc.wmu.Unlock()
			sc.inflight.Add(-1)
		}()
	}
}

func answer(f svpwire.Frame) []byte {
	switch f.Op {
	case svpwire.OpPing:
		return svpwire.AppendFrame(nil, svpwire.OpPong, f.ID, nil)
	case svpwire.OpVL2Req:
		return svpwire.VL2Ack{Status: svpwire.StatusOK, Port: 4789, Addr: netip.MustParseAddr("192.0.2.1")}.AppendFrame(nil, f.ID)
	case svpwire.OpVL3Req:
		return svpwire.VL3Ack{Status: svpwire.StatusOK, MAC: [6]byte{2, 8, 32, 0, 0, 2}, Port: 4789,
			Addr: netip.MustParseAddr("192.0.2.1")}.AppendFrame(nil, f.ID)
	case svpwire.OpLogReq:
		return svpwire.LogAck{Status: svpwire.StatusOK}.AppendFrame(nil, f.ID)
	case svpwire.OpLogRm:
		return svpwire.LogRmAck{Status: svpwire.StatusOK}.AppendFrame(nil, f.ID)
	}
	return svpwire.AppendFrame(nil, svpwire.OpPong, f.ID, nil)
}

func (s *fakeServer) setGate(g chan struct{}) {
	s.mu.Lock()
	s.gate = g
	s.mu.Unlock()
}

// inflight is how many requests the server has read and not answered.
func (s *fakeServer) inflight() int32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int32
	for _, c := range s.conns {
		n += c.inflight.Load()
	}
	return n
}

func (s *fakeServer) logTimes() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.logReqs...)
}

// start runs an svp instance (vnetid 42) against s with timings tm.
func start(t *testing.T, s *fakeServer, tm timings) (*instance, *fakeHost) {
	t.Helper()
	timingsMu.Lock()
	saved := current
	current = tm
	timingsMu.Unlock()
	t.Cleanup(func() {
		timingsMu.Lock()
		current = saved
		timingsMu.Unlock()
	})
	return startVNet(t, s, 42)
}

// startVNet runs an svp instance for vnetid against s, with the timings
// in force (a second one joins the first's remote).
func startVNet(t *testing.T, s *fakeServer, vnetid uint32) (*instance, *fakeHost) {
	t.Helper()
	h := &fakeHost{}
	in := &instance{key: remoteKey{host: s.addr.Addr().String(), port: s.addr.Port(),
		underlay: netip.MustParseAddr("192.0.2.9")}, vnetid: vnetid, host: h, log: slog.New(slog.DiscardHandler)}
	if err := in.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Stop)
	return in, h
}

func lookup(in *instance, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	dest, err := in.Lookup(ctx, 0, ether.MAC{2, 8, 32, 0, 0, 2})
	if err == nil && dest.IP != netip.MustParseAddr("192.0.2.1") {
		return errors.New("wrong answer " + dest.IP.String())
	}
	return err
}

// TestStall: a server that accepts but answers nothing makes the overlay
// DEGRADED with "not answering", its address and port and for how long;
// the connection is not closed (nor redialled) within giveUp, and the
// first answer clears the state and answers the waiting lookup.
func TestStall(t *testing.T) {
	s := newFakeServer(t)
	tm := testTimings
	tm.giveUp = 30 * time.Second // TestStallGiveUp tests it
	in, h := start(t, s, tm)
	if err := lookup(in, time.Second); err != nil {
		t.Fatalf("lookup before the stall: %v", err)
	}
	h.waitFor(t, 15*time.Second, "ONLINE", online)
	gate := make(chan struct{})
	s.setGate(gate)
	res := make(chan error, 1)
	go func() { res <- lookup(in, 10*time.Second) }()
	reason := h.waitFor(t, 15*time.Second, "DEGRADED not answering",
		degradedWith("is not answering", "127.0.0.1", "port "+itoa(s.addr.Port()), "no answer for more than 150ms", "since"))
	t.Logf("reason: %s", reason)
	time.Sleep(2 * tm.attempt) // past the attempt timeout that closed connections once
	if n := s.accepts.Load(); n != 1 {
		t.Errorf("%d connections accepted during a stall shorter than giveUp, want 1", n)
	}
	s.setGate(nil)
	close(gate)
	if err := <-res; err != nil {
		t.Errorf("lookup across the stall: %v", err)
	}
	h.waitFor(t, 15*time.Second, "ONLINE after the first answer", online)
	if n := s.closedInFlight.Load(); n != 0 {
		t.Errorf("the client closed %d connections with requests in flight", n)
	}
}

// TestStallGiveUp: a server that makes no progress for giveUp gets its
// connection closed and redialled, and the overlay stays DEGRADED: never
// ONLINE across the reconnect, the stall still dated from when it began.
func TestStallGiveUp(t *testing.T) {
	s := newFakeServer(t)
	in, h := start(t, s, testTimings)
	gate := make(chan struct{})
	s.setGate(gate)
	defer close(gate)
	go lookup(in, 3*time.Second)
	before := h.waitFor(t, 15*time.Second, "DEGRADED", degradedWith("is not answering"))
	since := before[strings.Index(before, "(since "):]
	deadline := time.Now().Add(3 * testTimings.giveUp)
	for s.accepts.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("a connection that made no progress for %v was not closed", 3*testTimings.giveUp)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The new connection gets its own giveUp: no reconnect storm against
	// a stopped server whose listen queue accepts every redial.
	time.Sleep(testTimings.giveUp / 2)
	if n := s.accepts.Load(); n != 2 {
		t.Errorf("%d connections within giveUp/2 of the first reconnect, want 2", n)
	}
	if r, _ := h.state(); !strings.Contains(r, "is not answering") || !strings.Contains(r, since) {
		t.Errorf("after the reconnect, reason %q, want still not answering %s", r, since)
	}
	h.mu.Lock()
	restores := h.restores
	h.mu.Unlock()
	if restores != 0 {
		t.Errorf("the overlay went ONLINE %d times across the reconnect, though nothing was answered", restores)
	}
}

// TestSlowServer: a server that answers every request late (twice the
// attempt timeout, as a 3 s stall is to the 1.5 s attempt) keeps its
// connection; its late answers to abandoned requests are dropped quietly.
func TestSlowServer(t *testing.T) {
	s := newFakeServer(t)
	in, h := start(t, s, testTimings)
	if err := lookup(in, time.Second); err != nil {
		t.Fatalf("lookup: %v", err)
	}
	s.mu.Lock()
	s.delay = 2 * testTimings.attempt
	s.mu.Unlock()
	if err := lookup(in, time.Second); err != nil {
		t.Errorf("lookup to a slow server: %v", err)
	}
	// A caller that gives up before the answer: the late answer must
	// not reset the connection.
	if err := lookup(in, testTimings.attempt/2); err == nil {
		t.Error("lookup shorter than the server's delay succeeded")
	}
	// Wait until the server has written the late answer; the next
	// lookup's round trip on the same connection then comes after the
	// client has read it.
	deadline := time.Now().Add(5 * time.Second)
	for s.inflight() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the slow server never wrote its late answer")
		}
		time.Sleep(2 * time.Millisecond)
	}
	s.mu.Lock()
	s.delay = 0
	s.mu.Unlock()
	if err := lookup(in, time.Second); err != nil {
		t.Errorf("lookup after a late answer: %v", err)
	}
	if n := s.accepts.Load(); n != 1 {
		t.Errorf("%d connections accepted, want 1: the slow server's connection was closed", n)
	}
	if n := s.closedInFlight.Load(); n != 0 {
		t.Errorf("the client closed %d connections with requests in flight", n)
	}
	if r, _ := h.state(); r != "" {
		t.Errorf("overlay DEGRADED: %s", r)
	}
}

// TestCrashOnLogReq: a server that dies of every LOG_REQ (Triton's json
// store) and is restarted at once: the first LOG_REQ waits logDelay,
// later ones back off exponentially, lookups are answered meanwhile (those
// outstanding when it dies retried on the new connection), and the reason
// names the log.
func TestCrashOnLogReq(t *testing.T) {
	s := newFakeServer(t)
	// Answers take a while, so that a lookup is mostly outstanding when
	// a LOG_REQ kills the server.
	s.mu.Lock()
	s.delay = 20 * time.Millisecond
	s.mu.Unlock()
	var crashes atomic.Int32
	s.hook = func(s *fakeServer, sc *serverConn, f svpwire.Frame) bool {
		if f.Op != svpwire.OpLogReq {
			return false
		}
		crashes.Add(1)
		s.crash(20 * time.Millisecond)
		return true
	}
	tm := testTimings
	tm.logDelay = 50 * time.Millisecond
	began := time.Now()
	in, h := start(t, s, tm)
	var failed int
	seenDown := false
	for time.Since(began) < 1500*time.Millisecond {
		if err := lookup(in, time.Second); err != nil {
			failed++
			t.Logf("lookup: %v", err)
		}
		if r, _ := h.state(); strings.Contains(r, "cannot reach") && strings.Contains(r, "LOG_REQ") {
			seenDown = true
		}
		time.Sleep(5 * time.Millisecond)
	}
	if failed > 0 {
		t.Errorf("%d lookups failed while the server died of LOG_REQs", failed)
	}
	times := s.logTimes()
	if len(times) == 0 || times[0].Sub(began) < tm.logDelay {
		t.Fatalf("LOG_REQs at %v, want the first after %v", times, tm.logDelay)
	}
	// 50, 100, 200, 400, 800 ms apart: 5 in 1.5 s (at 25 ms polling
	// without backoff it would be dozens).
	if len(times) > 6 {
		t.Errorf("%d LOG_REQs in 1.5 s to a server that dies of each: no backoff", len(times))
	}
	// Backing off: the gaps grow to hundreds of milliseconds (without
	// backoff they stay near the 25 ms poll interval plus a reconnect).
	var widest time.Duration
	for i := 1; i < len(times); i++ {
		widest = max(widest, times[i].Sub(times[i-1]))
	}
	if len(times) < 3 || widest < 300*time.Millisecond {
		t.Errorf("LOG_REQs %d, widest gap %v: not backing off", len(times), widest)
	}
	r := h.waitFor(t, 15*time.Second, "DEGRADED naming the log", degradedWith("LOG_REQ", "backed off", "lookups are answered"))
	t.Logf("reason: %s; %d crashes; seen while down with the LOG_REQ named: %v", r, crashes.Load(), seenDown)
}

// TestCloseMidFrame: a server that closes the connection in the middle
// of a reply: the overlay is DEGRADED with that reason until the new
// connection answers, and the lookup is retried and answered.
func TestCloseMidFrame(t *testing.T) {
	s := newFakeServer(t)
	var once atomic.Bool
	s.hook = func(s *fakeServer, sc *serverConn, f svpwire.Frame) bool {
		if f.Op != svpwire.OpVL2Req || once.Swap(true) {
			return false
		}
		b := answer(f)
		sc.wmu.Lock()
		sc.Write(b[:len(b)/2])
		sc.wmu.Unlock()
		sc.closing.Store(true)
		sc.Close()
		return true
	}
	in, h := start(t, s, testTimings)
	if err := lookup(in, time.Second); err != nil {
		t.Errorf("lookup: %v", err)
	}
	h.waitFor(t, 15*time.Second, "ONLINE", online)
	_, hist := h.state()
	if len(hist) == 0 || !strings.Contains(hist[0], "in the middle of a frame") || !strings.Contains(hist[0], "127.0.0.1") {
		t.Errorf("DEGRADED reasons %q, want one naming the close in the middle of a frame", hist)
	}
	if n := s.accepts.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

// TestGarbage: a server that sends garbage: DEGRADED with the reason, no
// redial storm (backoff, since it never answers), and ONLINE once it
// answers properly.
func TestGarbage(t *testing.T) {
	s := newFakeServer(t)
	var bad atomic.Bool
	bad.Store(true)
	s.hook = func(s *fakeServer, sc *serverConn, f svpwire.Frame) bool {
		if !bad.Load() {
			return false
		}
		sc.wmu.Lock()
		sc.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
		sc.wmu.Unlock()
		return true
	}
	in, h := start(t, s, testTimings)
	r := h.waitFor(t, 15*time.Second, "DEGRADED naming the garbage", degradedWith("127.0.0.1", "malformed frame"))
	t.Logf("reason: %s", r)
	if err := lookup(in, 200*time.Millisecond); err == nil {
		t.Error("a lookup was answered by a server sending garbage")
	}
	time.Sleep(500 * time.Millisecond)
	// 10 ms doubling to 100 ms: about 10 connections in 0.7 s.
	if n := s.accepts.Load(); n > 20 {
		t.Errorf("%d connections in 0.7 s to a server sending garbage: a reconnect storm", n)
	}
	bad.Store(false)
	if err := lookup(in, time.Second); err != nil {
		t.Errorf("lookup once the server is sane: %v", err)
	}
	h.waitFor(t, 15*time.Second, "ONLINE", online)
}

// TestUnknownID: an answer with an id nobody asked for resets the
// connection and is reported; the lookup is answered on the new one.
func TestUnknownID(t *testing.T) {
	s := newFakeServer(t)
	var once atomic.Bool
	s.hook = func(s *fakeServer, sc *serverConn, f svpwire.Frame) bool {
		if f.Op != svpwire.OpVL2Req || once.Swap(true) {
			return false
		}
		f.ID += 1000
		sc.wmu.Lock()
		sc.Write(answer(f))
		sc.wmu.Unlock()
		return true
	}
	in, h := start(t, s, testTimings)
	if err := lookup(in, time.Second); err != nil {
		t.Errorf("lookup: %v", err)
	}
	h.waitFor(t, 15*time.Second, "ONLINE", online)
	_, hist := h.state()
	if len(hist) == 0 || !strings.Contains(hist[0], "which no request has") {
		t.Errorf("DEGRADED reasons %q, want one naming the unknown id", hist)
	}
	if n := s.accepts.Load(); n != 2 {
		t.Errorf("%d connections, want 2 (the connection reset)", n)
	}
}

// TestLogDelay: the first LOG_REQ waits logDelay; then the log is polled
// every pollInterval, as fast as before.
func TestLogDelay(t *testing.T) {
	s := newFakeServer(t)
	tm := testTimings
	tm.logDelay = 1500 * time.Millisecond
	began := time.Now()
	start(t, s, tm)
	deadline := time.Now().Add(10 * time.Second)
	for len(s.logTimes()) < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("LOG_REQs %v", s.logTimes())
		}
		time.Sleep(5 * time.Millisecond)
	}
	times := s.logTimes()
	if first := times[0].Sub(began); first < tm.logDelay {
		t.Errorf("first LOG_REQ after %v, want at least %v", first, tm.logDelay)
	}
	// Polled every pollInterval after the first, not every logDelay.
	if span := times[4].Sub(times[0]); span > tm.logDelay {
		t.Errorf("5 polls took %v, want about %v", span, 4*tm.pollInterval)
	}
}

func itoa(p uint16) string {
	b := []byte{}
	for ; p > 0; p /= 10 {
		b = append([]byte{byte('0' + p%10)}, b...)
	}
	return string(b)
}

// TestCrashOnLogReqWhileDown: while a server that died of a LOG_REQ is
// down, the reason says more than "connection refused": it names the
// LOG_REQ.
func TestCrashOnLogReqWhileDown(t *testing.T) {
	s := newFakeServer(t)
	s.hook = func(s *fakeServer, sc *serverConn, f svpwire.Frame) bool {
		if f.Op != svpwire.OpLogReq {
			return false
		}
		s.crash(time.Hour)
		return true
	}
	tm := testTimings
	tm.logDelay = 20 * time.Millisecond
	_, h := start(t, s, tm)
	r := h.waitFor(t, 2*time.Second, "DEGRADED, unreachable, naming the LOG_REQ",
		degradedWith("cannot reach any mapping server", "127.0.0.1", "LOG_REQ"))
	t.Logf("reason: %s", r)
}

// TestLogWaitsForServerBack: a host that starts while the server is down
// sends no LOG_REQ right behind the connect when the server comes up
// (what would kill a restarted server without a log again): the first
// waits logDelay after the connection first answered, and lookups go
// first.
func TestLogWaitsForServerBack(t *testing.T) {
	s := newFakeServer(t)
	s.crash(400 * time.Millisecond) // down now, back 0.4 s later
	// It answers 60 ms after each request (less than an attempt): the
	// delay is counted from that first answer, not from the connect.
	answerDelay := 60 * time.Millisecond
	s.mu.Lock()
	s.delay = answerDelay
	s.mu.Unlock()
	tm := testTimings
	tm.logDelay = 100 * time.Millisecond
	in, _ := start(t, s, tm)
	if err := lookup(in, 5*time.Second); err != nil {
		t.Fatalf("lookup once the server is back: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(s.logTimes()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no LOG_REQ 5 s after the server came back")
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.mu.Lock()
	accepted := s.accepted[len(s.accepted)-1]
	s.mu.Unlock()
	if gap := s.logTimes()[0].Sub(accepted); gap < answerDelay+tm.logDelay-10*time.Millisecond {
		t.Errorf("first LOG_REQ %v after the server came back, want at least its first answer (%v) and the log delay %v",
			gap, answerDelay, tm.logDelay)
	}
}

// TestOldLogReqNotBlamed: a server closed (restarted) while a LOG_REQ
// has long been waiting (a stopped server killed later; a held long-poll)
// is not taken for one that dies of LOG_REQs: log polling is not backed
// off and the reason does not blame the log.
func TestOldLogReqNotBlamed(t *testing.T) {
	s := newFakeServer(t)
	s.hook = func(s *fakeServer, sc *serverConn, f svpwire.Frame) bool {
		return f.Op == svpwire.OpLogReq // held: never answered
	}
	tm := testTimings
	tm.logDelay = 50 * time.Millisecond
	in, h := start(t, s, tm)
	waitLogReqs := func(n int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for len(s.logTimes()) < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d LOG_REQs after 5 s, want %d", len(s.logTimes()), n)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	waitLogReqs(1)
	// Not a readiness wait: the LOG_REQ must be older than one attempt
	// time when the server goes away.
	time.Sleep(3 * tm.attempt)
	s.crash(20 * time.Millisecond)
	waitLogReqs(2) // the poller went on after the close
	_, hist := h.state()
	for _, r := range hist {
		// The held LOG_REQ was no request lost: the close was of an
		// idle connection ("cannot reach" while it is down is right).
		if strings.Contains(r, "LOG_REQ") {
			t.Errorf("a reason names the held LOG_REQ: %s", r)
		}
	}
	in.remote.mu.Lock()
	closures := in.remote.logClosures
	in.remote.mu.Unlock()
	if closures != 0 {
		t.Errorf("a close %v after a LOG_REQ was counted as closing on LOG_REQ (%d)", 3*tm.attempt, closures)
	}
	if r, _ := h.state(); strings.Contains(r, "backed off") {
		t.Errorf("reason blames the log: %s", r)
	}
}

// TestJoinDegraded: an overlay that starts on a remote already DEGRADED
// (another overlay's, same server) is told so with the reason, though
// the state does not change as it joins.
func TestJoinDegraded(t *testing.T) {
	s := newFakeServer(t)
	s.crash(time.Hour)
	_, h := start(t, s, testTimings)
	want := degradedWith("cannot reach any mapping server", "127.0.0.1")
	r := h.waitFor(t, 15*time.Second, "the first overlay DEGRADED", want)
	_, h2 := startVNet(t, s, 43)
	r2 := h2.waitFor(t, 15*time.Second, "the joining overlay DEGRADED", want)
	if r2 != r {
		// Not an error: the reason may have changed meanwhile.
		t.Logf("first overlay's reason %q, joining one's %q", r, r2)
	}
}

// TestLogTimings: the relations the long poll relies on hold for the
// plugin's timings and the tests'.
func TestLogTimings(t *testing.T) {
	if defaultTimings.logHold != 5*time.Second {
		t.Errorf("the assumed server hold is %v, want portolan's default 5s", defaultTimings.logHold)
	}
	for name, tm := range map[string]timings{"default": defaultTimings, "test": testTimings} {
		if err := tm.check(); err != nil {
			t.Errorf("%s timings: %v", name, err)
		}
	}
}

// logHolder makes a fakeServer hold each LOG_REQ as a long-polling
// server does: answered with the entries the test adds (at once if some
// are queued), or empty once hold has passed.
type logHolder struct {
	s    *fakeServer
	hold time.Duration

	mu      sync.Mutex
	held    []*heldLog
	queued  []svpwire.LogEntry
	empties []time.Time // when held LOG_REQs were answered empty
}

type heldLog struct {
	sc *serverConn
	id uint32
}

func holdLog(s *fakeServer, hold time.Duration) *logHolder {
	lh := &logHolder{s: s, hold: hold}
	s.hook = func(s *fakeServer, sc *serverConn, f svpwire.Frame) bool {
		if f.Op != svpwire.OpLogReq {
			return false
		}
		lh.mu.Lock()
		if q := lh.queued; len(q) > 0 {
			lh.queued = nil
			lh.mu.Unlock()
			lh.write(sc, svpwire.LogAck{Status: svpwire.StatusOK, Entries: q}.AppendFrame(nil, f.ID))
			return true
		}
		hr := &heldLog{sc: sc, id: f.ID}
		lh.held = append(lh.held, hr)
		lh.mu.Unlock()
		s.wg.Add(1) // from a handler: the count is not 0
		go func() {
			defer s.wg.Done()
			select {
			case <-time.After(hold):
			case <-s.done:
				return
			}
			if lh.take(hr) {
				lh.write(sc, svpwire.LogAck{Status: svpwire.StatusOK}.AppendFrame(nil, hr.id))
				lh.mu.Lock()
				lh.empties = append(lh.empties, time.Now())
				lh.mu.Unlock()
			}
		}()
		return true
	}
	return lh
}

func (lh *logHolder) write(sc *serverConn, b []byte) {
	sc.wmu.Lock()
	sc.Write(b)
	sc.wmu.Unlock()
}

// take removes hr from the held LOG_REQs, reporting whether it was there.
func (lh *logHolder) take(hr *heldLog) bool {
	lh.mu.Lock()
	defer lh.mu.Unlock()
	for i, h := range lh.held {
		if h == hr {
			lh.held = append(lh.held[:i], lh.held[i+1:]...)
			return true
		}
	}
	return false
}

// add answers the oldest held LOG_REQ with e, or queues e for the next
// LOG_REQ if none is held; it reports whether one was held, and when it
// answered.
func (lh *logHolder) add(e svpwire.LogEntry) (held bool, at time.Time) {
	lh.mu.Lock()
	if len(lh.held) == 0 {
		lh.queued = append(lh.queued, e)
		lh.mu.Unlock()
		return false, time.Now()
	}
	hr := lh.held[0]
	lh.held = lh.held[1:]
	lh.mu.Unlock()
	at = time.Now()
	lh.write(hr.sc, svpwire.LogAck{Status: svpwire.StatusOK, Entries: []svpwire.LogEntry{e}}.AppendFrame(nil, hr.id))
	return true, at
}

func (lh *logHolder) emptyCount() int {
	lh.mu.Lock()
	defer lh.mu.Unlock()
	return len(lh.empties)
}

// waitUntil waits for cond, failing after d.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", d, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestHeldLogReqPrompt: against a server that holds LOG_REQs, a LOG_REQ
// is outstanding at all times, also right after a held one came back
// empty, so an entry reaches the host (Invalidate) within milliseconds
// of appearing, not a poll interval later.
func TestHeldLogReqPrompt(t *testing.T) {
	s := newFakeServer(t)
	tm := testTimings
	tm.logDelay = 20 * time.Millisecond
	// A poll interval the pauses would be unmistakable at, and a server
	// hold beyond it (else its empty answers look fast).
	tm.pollInterval = 100 * time.Millisecond
	lh := holdLog(s, 150*time.Millisecond)
	_, h := start(t, s, tm)
	var worst time.Duration
	for i := range 5 {
		n := lh.emptyCount()
		waitUntil(t, 15*time.Second, "a held LOG_REQ answered empty", func() bool { return lh.emptyCount() > n })
		// Not a readiness wait: the entry appears this long after a
		// held LOG_REQ came back empty, inside the pause a plugin that
		// waited a poll interval after it would make.
		time.Sleep(tm.pollInterval * 2 / 5)
		mac := ether.MAC{2, 8, 32, 0, 1, byte(i)}
		held, at := lh.add(svpwire.LogEntry{Type: svpwire.LogVL2, ID: [16]byte{byte(i + 1)}, MAC: mac, VNetID: 42})
		if !held {
			t.Errorf("entry %d: no LOG_REQ held by the server when it appeared", i)
		}
		var got time.Time
		waitUntil(t, 15*time.Second, "the entry's Invalidate", func() bool {
			var ok bool
			got, ok = h.invalidatedAt(mac)
			return ok
		})
		lat := got.Sub(at)
		worst = max(worst, lat)
		if lat > 20*time.Millisecond {
			t.Errorf("entry %d reached the host %v after it appeared, want within a few ms", i, lat)
		}
	}
	t.Logf("worst latency from entry to Invalidate: %v", worst)
	if r, hist := h.state(); r != "" || len(hist) > 0 {
		t.Errorf("overlay DEGRADED against a holding server: %q", hist)
	}
}

// TestFastEmptyLogNoBusyLoop: against a server that answers LOG_REQs at
// once (or within the poll interval) with an empty log, the plugin
// pauses a poll interval after each: no busy loop.
func TestFastEmptyLogNoBusyLoop(t *testing.T) {
	for _, delay := range []time.Duration{0, testTimings.pollInterval / 2} {
		t.Run("delay "+delay.String(), func(t *testing.T) {
			s := newFakeServer(t)
			s.mu.Lock()
			s.delay = delay
			s.mu.Unlock()
			tm := testTimings
			tm.logDelay = 20 * time.Millisecond
			start(t, s, tm)
			waitUntil(t, 15*time.Second, "the first LOG_REQ", func() bool { return len(s.logTimes()) > 0 })
			first := s.logTimes()[0]
			const window = 500 * time.Millisecond
			time.Sleep(time.Until(first.Add(window))) // the span measured
			var n int
			minGap := time.Hour
			times := s.logTimes()
			for i, at := range times {
				if at.Sub(first) > window {
					break
				}
				n++
				if i > 0 {
					minGap = min(minGap, at.Sub(times[i-1]))
				}
			}
			if limit := int(window/tm.pollInterval) + 1; n > limit {
				t.Errorf("%d LOG_REQs in %v, want at most %d (one per poll interval %v)", n, window, limit, tm.pollInterval)
			}
			if n < 2 || minGap < tm.pollInterval*9/10 {
				t.Errorf("%d LOG_REQs in %v, closest %v apart: want one per poll interval %v", n, window, minGap, tm.pollInterval)
			}
			t.Logf("%d LOG_REQs in %v, closest %v apart", n, window, minGap)
		})
	}
}

// TestHeldLogReqNoStall: a LOG_REQ held for several times stallAfter
// (and attempt), with no lookups outstanding, leaves the overlay ONLINE
// and the connection open; it is not sent again, and lookups are
// answered meanwhile.
func TestHeldLogReqNoStall(t *testing.T) {
	s := newFakeServer(t)
	s.hook = func(s *fakeServer, sc *serverConn, f svpwire.Frame) bool {
		return f.Op == svpwire.OpLogReq // held for the whole test
	}
	tm := testTimings
	tm.logDelay = 20 * time.Millisecond
	in, h := start(t, s, tm)
	waitUntil(t, 15*time.Second, "the first LOG_REQ", func() bool { return len(s.logTimes()) > 0 })
	first := s.logTimes()[0]
	hold := 4 * tm.stallAfter // < logCall
	for time.Since(first) < hold {
		if r, _ := h.state(); r != "" {
			t.Fatalf("DEGRADED %v into a held LOG_REQ: %s", time.Since(first), r)
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := lookup(in, time.Second); err != nil {
		t.Errorf("lookup while a LOG_REQ is held: %v", err)
	}
	if _, hist := h.state(); len(hist) > 0 {
		t.Errorf("DEGRADED reasons %q while a LOG_REQ was held", hist)
	}
	if n := s.accepts.Load(); n != 1 {
		t.Errorf("%d connections accepted, want 1: closed for a held LOG_REQ", n)
	}
	if n := len(s.logTimes()); n != 1 {
		t.Errorf("%d LOG_REQs sent while one was held, want 1", n)
	}
}

// TestOverdueLogReq: a LOG_REQ held far beyond any sane hold (past
// logCall) is owed like any request: the overlay becomes DEGRADED as not
// answering stallAfter later (not sooner), and the connection is closed
// for making no progress giveUp later.
func TestOverdueLogReq(t *testing.T) {
	s := newFakeServer(t)
	s.hook = func(s *fakeServer, sc *serverConn, f svpwire.Frame) bool {
		return f.Op == svpwire.OpLogReq // never answered
	}
	tm := testTimings
	tm.logDelay = 20 * time.Millisecond
	_, h := start(t, s, tm)
	h.waitFor(t, 15*time.Second, "DEGRADED not answering", degradedWith("is not answering"))
	first := s.logTimes()[0]
	if d := time.Since(first); d < tm.logCall {
		t.Errorf("DEGRADED %v after the LOG_REQ, before logCall %v", d, tm.logCall)
	}
	waitUntil(t, 15*time.Second, "the connection closed and redialled", func() bool { return s.accepts.Load() >= 2 })
	s.mu.Lock()
	second := s.accepted[1]
	s.mu.Unlock()
	if d := second.Sub(first); d < tm.logCall+tm.giveUp {
		t.Errorf("closed %v after the LOG_REQ, before logCall + giveUp %v", d, tm.logCall+tm.giveUp)
	}
}

// TestNoPortDest: on an encapsulation whose destinations have no port
// (NVGRE), VL2 and VL3 answers are used without the server's port; on
// one with ports, with it.
func TestNoPortDest(t *testing.T) {
	s := newFakeServer(t)
	in, _ := start(t, s, current)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if d, err := in.Lookup(ctx, 0, ether.MAC{2, 8, 32, 0, 0, 2}); err != nil || d.Port != 4789 {
		t.Errorf("with ports: %v, %v; want port 4789", d, err)
	}
	in.noPort = true
	if d, err := in.Lookup(ctx, 0, ether.MAC{2, 8, 32, 0, 0, 2}); err != nil || d.Port != 0 || d.IP != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("VL2 without ports: %v, %v; want 192.0.2.1 and no port", d, err)
	}
	if _, d, err := in.vl3(ctx, netip.MustParseAddr("10.9.0.2")); err != nil || d.Port != 0 {
		t.Errorf("VL3 without ports: %v, %v; want no port", d, err)
	}
	if _, err := newInstance(search.Config{Dest: encap.DestIP, Props: prop.NewSet(props(encap.DestIP))}); err != nil {
		t.Errorf("an ip-only destination refused: %v", err)
	}
}
