// Package portolan is the SVP mapping server: it answers overlay hosts'
// VL2 lookups (which host holds a MAC), VL3 lookups (which MAC holds an
// IP) and log requests (which cached answers to forget) from a store.
package portolan

import (
	"bufio"
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

	"overlaynet/ether"
	"overlaynet/portolan/store"
	"overlaynet/svp"
)

// Limits of one connection.
const (
	// maxInFlight bounds the requests of one connection being answered at
	// once; replies may leave in any order.
	maxInFlight = 64
	// idleTimeout closes a connection that sends nothing (hosts poll
	// their log every second or so, so a live host is never this idle).
	idleTimeout = 10 * time.Minute
	// maxLogBytes caps the entries of one LOG_ACK whatever a host asks.
	maxLogBytes = 64 << 10
	// maxBody is the largest request body accepted: LOG_RM with 4,000
	// ids. Anything larger closes the connection.
	maxBody = 64 << 10
)

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
	Store store.Store
	Log   *slog.Logger
	// NoOwnershipCheck answers LOG_REQ and LOG_RM from any source
	// address, trusting the underlay IP a client claims.
	NoOwnershipCheck bool

	conns    atomic.Int64
	requests atomic.Uint64
	refused  atomic.Uint64
	// closedInFlight counts connections their client closed while
	// requests on them were unanswered: Triton's portolan dies writing
	// into such a socket, so clients should not do it.
	closedInFlight atomic.Uint64
}

// Serve accepts connections until ctx ends or ln is closed, then closes
// the connections it accepted and returns once they are done. Other
// accept errors that are temporary (running out of file descriptors, a
// connection aborted before it was accepted) are logged and retried after
// a pause: they must not stop the server.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
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

// request is a decoded request, owned by its handler.
type request struct {
	op   svp.Op
	id   uint32
	msg  any
	done func() // releases the in-flight slot
}

// serveConn answers one connection. A malformed frame, or a message a
// client must not send, closes this connection only.
func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	log := s.logger().With("peer", c.RemoteAddr().String())
	src := sourceAddr(c)
	s.conns.Add(1)
	defer s.conns.Add(-1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-ctx.Done()
		c.Close()
	}()
	log.Debug("connection opened")

	replies := make(chan []byte, maxInFlight)
	writerDone := make(chan struct{})
	var unanswered atomic.Int64 // read, and not yet taken by the writer
	go func() {
		defer close(writerDone)
		s.write(c, replies, cancel, &unanswered)
	}()
	var handlers sync.WaitGroup
	slots := make(chan struct{}, maxInFlight)
	r := svp.NewReader(c, maxBody)
	clean := false
	for {
		c.SetReadDeadline(time.Now().Add(idleTimeout))
		f, err := r.Next()
		if err == io.EOF {
			// The client closed its side cleanly (it may have shut down
			// only its writing half): answer what it sent before closing.
			clean = true
		}
		closedByClient := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
		if closedByClient && ctx.Err() == nil {
			if n := unanswered.Load(); n > 0 {
				s.closedInFlight.Add(1)
				log.Warn("client closed a connection with requests in flight", "requests", n)
			}
		}
		if clean {
			break
		}
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				log.Warn("closing connection: bad frame", "err", err)
			}
			break
		}
		req, err := decodeRequest(f)
		if err != nil {
			log.Warn("closing connection: bad request", "op", f.Op.String(), "err", err)
			break
		}
		s.requests.Add(1)
		unanswered.Add(1)
		slots <- struct{}{}
		req.done = func() { <-slots }
		handlers.Add(1)
		go func() {
			defer handlers.Done()
			defer req.done()
			reply := s.answer(ctx, log, src, req)
			select {
			case replies <- reply:
			case <-ctx.Done():
			}
		}()
	}
	if !clean {
		cancel() // drop what is in flight and close now
	}
	handlers.Wait()
	close(replies)
	<-writerDone
	log.Debug("connection closed")
}

// write sends replies, flushing whenever no more are waiting, so that a
// burst of pipelined answers leaves in few system calls.
func (s *Server) write(c net.Conn, replies <-chan []byte, fail func(), unanswered *atomic.Int64) {
	w := bufio.NewWriterSize(c, 32<<10)
	for b := range replies {
		// Answered from here on: a client can have the reply only
		// after this.
		unanswered.Add(-1)
		// Before Write, not only before Flush: a reply larger than the
		// buffer's free space goes to the connection from Write, and
		// must not meet the deadline of a flush long past.
		c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := w.Write(b); err != nil {
			fail()
			continue
		}
		if len(replies) == 0 {
			if err := w.Flush(); err != nil {
				fail()
			}
		}
	}
}

// decodeRequest checks a frame is a request a client may send and decodes
// its body (which is only valid until the next frame is read).
func decodeRequest(f svp.Frame) (*request, error) {
	r := &request{op: f.Op, id: f.ID}
	var err error
	switch f.Op {
	case svp.OpPing:
		if len(f.Body) != 0 {
			err = errors.New("PING with a body")
		}
	case svp.OpVL2Req:
		r.msg, err = svp.DecodeVL2Req(f.Body)
	case svp.OpVL3Req:
		r.msg, err = svp.DecodeVL3Req(f.Body)
	case svp.OpLogReq:
		r.msg, err = svp.DecodeLogReq(f.Body)
	case svp.OpLogRm:
		r.msg, err = svp.DecodeLogRm(f.Body)
	case svp.OpBulkReq:
		r.msg, err = svp.DecodeBulkReq(f.Body)
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
	hosts, err := s.Store.HostsFrom(ctx, src)
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
	hosts, err := s.Store.HostsFrom(ctx, src)
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

// answer computes the reply frame to one request from a connection from
// src.
func (s *Server) answer(ctx context.Context, log *slog.Logger, src netip.Addr, r *request) []byte {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	switch m := r.msg.(type) {
	case nil: // PING
		return svp.AppendFrame(nil, svp.OpPong, r.id, nil)
	case svp.VL2Req:
		h, ok, err := s.Store.VL2(ctx, m.VNetID, ether.MAC(m.MAC))
		ack := svp.VL2Ack{Status: svp.StatusOK, Port: h.Port, Addr: h.IP}
		switch {
		case err != nil:
			log.Error("VL2 lookup failed", "err", err)
			ack = svp.VL2Ack{Status: svp.StatusFatal}
		case !ok:
			ack = svp.VL2Ack{Status: svp.StatusNotFound}
		}
		return ack.AppendFrame(nil, r.id)
	case svp.VL3Req:
		if m.Type != svp.L3IPv4 && m.Type != svp.L3IPv6 {
			return svp.VL3Ack{Status: svp.StatusBadL3Type}.AppendFrame(nil, r.id)
		}
		mac, h, ok, err := s.Store.VL3(ctx, m.VNetID, m.IP)
		ack := svp.VL3Ack{Status: svp.StatusOK, MAC: mac, Port: h.Port, Addr: h.IP}
		switch {
		case err != nil:
			log.Error("VL3 lookup failed", "err", err)
			ack = svp.VL3Ack{Status: svp.StatusFatal}
		case !ok:
			ack = svp.VL3Ack{Status: svp.StatusNotFound}
		}
		return ack.AppendFrame(nil, r.id)
	case svp.LogReq:
		ok, err := s.mayReadLog(ctx, src, m.IP)
		if err != nil {
			log.Error("log request failed", "err", err)
			return svp.LogAck{Status: svp.StatusFatal}.AppendFrame(nil, r.id)
		}
		if !ok {
			log.Warn("refused LOG_REQ: the connection does not come from the claimed host (register its address with portolan add-host --source)",
				"claimed_ip", m.IP.Unmap().String(), "source", src.String(), "refused_total", s.refused.Add(1))
			return svp.LogAck{Status: svp.StatusFatal}.AppendFrame(nil, r.id)
		}
		entries, err := s.Store.Log(ctx, m.IP, min(int(m.Count), maxLogBytes))
		if err != nil {
			if !errors.Is(err, store.ErrUnknownHost) {
				log.Error("log request failed", "err", err)
			} else {
				log.Warn("log request from an unknown host", "underlay_ip", m.IP.String())
			}
			return svp.LogAck{Status: svp.StatusFatal}.AppendFrame(nil, r.id)
		}
		ack := svp.LogAck{Status: svp.StatusOK}
		for _, e := range entries {
			ack.Entries = append(ack.Entries, svp.LogEntry{Type: e.Type, ID: e.ID, MAC: e.MAC,
				IP: e.IP, VLAN: e.VLAN, VNetID: e.VNetID})
		}
		return ack.AppendFrame(nil, r.id)
	case svp.LogRm:
		foreign, err := s.foreignOwners(ctx, src, m.IDs)
		if err != nil {
			log.Error("log removal failed", "err", err)
			return svp.LogRmAck{Status: svp.StatusFatal}.AppendFrame(nil, r.id)
		}
		if len(foreign) > 0 {
			log.Warn("refused LOG_RM: entries in the log of a host the connection does not come from (register its address with portolan add-host --source)",
				"hosts", strings.Join(foreign, ","), "source", src.String(), "ids", len(m.IDs), "refused_total", s.refused.Add(1))
			return svp.LogRmAck{Status: svp.StatusFatal}.AppendFrame(nil, r.id)
		}
		if err := s.Store.RemoveLog(ctx, m.IDs); err != nil {
			log.Error("log removal failed", "err", err)
			return svp.LogRmAck{Status: svp.StatusFatal}.AppendFrame(nil, r.id)
		}
		return svp.LogRmAck{Status: svp.StatusOK}.AppendFrame(nil, r.id)
	case svp.BulkReq:
		st := svp.StatusFatal // bulk transfers are not defined in version 1
		if m.Type != svp.BulkVL2 && m.Type != svp.BulkVL3 {
			st = svp.StatusBadBulk
		}
		return svp.BulkAck{Status: st, Type: m.Type}.AppendFrame(nil, r.id)
	}
	return svp.AppendFrame(nil, svp.OpPong, r.id, nil)
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
