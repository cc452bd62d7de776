package bench

import (
	"container/heap"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"overlaynet/svpwire"
)

// The simulated hosts run in a few event loops (simLoop), each owning a
// share of them: one epoll_wait, then a read per ready connection, then
// the writes that the reads called for. A goroutine per host would cost
// the simulator more CPU than the server it measures (a read that finds
// nothing after every reply, a scheduler wake-up per frame), and on two
// cores that CPU is taken from the server; it also measured its own
// queueing as lookup latency.

// simHost is one simulated host: a connection that behaves as the plugin
// does (one LOG_REQ outstanding, entries removed with LOG_RM) and carries
// its share of the lookups. Its loop alone touches it once the loops run.
type simHost struct {
	i, srv int
	ip     netip.Addr
	fd     int   // -1: not connected, or closed
	key    int32 // in its loop's poller

	in    []byte // the start of a frame not yet whole
	out   []byte // what the socket has not taken yet
	dirty bool   // out is to be written at the end of the round
	outOn bool   // EPOLLOUT is watched

	used    uint64 // lookup slots in flight
	ids     [64]uint32
	sent    [64]int64
	seq     uint32
	logSeq  uint32
	logSent int64 // nanotime of the LOG_REQ outstanding

	got   uint64 // changes seen, a bit each
	ready bool
}

// simLoop runs a share of the hosts.
type simLoop struct {
	sr    *scaleRun
	ep    *poller
	hosts []*simHost // by epoll key
	rate  float64    // lookups a second offered by this loop
	buf   []byte     // read buffer
	wbuf  []byte     // a lookup's frame
	dirty []*simHost
	due   timerHeap // LOG_REQs to send later

	paceFrom int64 // the pacing start the counts below are for
	paced    int64 // lookups offered since
	next     int   // host of the next lookup
	rnd      uint64
}

const simLoops = 2

// startLoops hands the connected hosts to simLoops loops and starts them;
// each host's first LOG_REQ goes at a random point of the first half
// second, as real hosts started at random times poll out of phase.
func (sr *scaleRun) startLoops() error {
	var loops []*simLoop
	closeAll := func() {
		for _, l := range loops {
			l.ep.close()
		}
	}
	for k := range simLoops {
		ep, err := newPoller(256)
		if err != nil {
			closeAll()
			return err
		}
		loops = append(loops, &simLoop{sr: sr, ep: ep, rate: float64(sr.o.LookupRate) / simLoops,
			buf: make([]byte, 64<<10), rnd: uint64(k)*0x9e3779b97f4a7c15 + 1})
	}
	now := nanotime()
	n := 0
	for _, h := range sr.hosts {
		if h.fd < 0 {
			continue
		}
		l := loops[n%simLoops]
		n++
		h.key = int32(len(l.hosts))
		if err := l.ep.add(h.fd, pollIn, h.key); err != nil {
			closeAll() // the hosts' sockets are closed by the caller
			return err
		}
		l.hosts = append(l.hosts, h)
		sr.readyWG.Add(1)
		heap.Push(&l.due, timer{at: now + int64(rand.N(500*time.Millisecond)), h: h})
	}
	for _, l := range loops {
		sr.readers.Add(1)
		go l.run()
	}
	return nil
}

// run is the loop: offer the lookups due, send the LOG_REQs due, wait for
// replies, read every ready host, then write what the reads called for.
func (l *simLoop) run() {
	sr := l.sr
	defer sr.readers.Done()
	defer func() {
		for _, h := range l.hosts {
			l.close(h)
		}
		l.ep.close()
	}()
	for !sr.stopping.Load() {
		now := nanotime()
		l.pace(now)
		for len(l.due) > 0 && l.due[0].at <= now {
			t := heap.Pop(&l.due).(timer)
			if t.h.fd >= 0 {
				l.sendLogReq(t.h, now)
			}
		}
		l.flush()
		wait := 10 * time.Millisecond
		if sr.paceStart.Load() != 0 {
			wait = time.Millisecond
		}
		if len(l.due) > 0 {
			wait = min(wait, time.Duration(max(0, l.due[0].at-now)))
		}
		evs, err := l.ep.wait(wait)
		if err != nil {
			sr.fail(err)
			return
		}
		for _, ev := range evs {
			if ev.Fd < 0 || int(ev.Fd) >= len(l.hosts) {
				continue
			}
			h := l.hosts[ev.Fd]
			if ev.Events&unix.EPOLLOUT != 0 && h.fd >= 0 {
				l.markDirty(h)
			}
			if ev.Events&(unix.EPOLLIN|unix.EPOLLERR|unix.EPOLLHUP|unix.EPOLLRDHUP) != 0 && h.fd >= 0 {
				l.read(h)
			}
		}
		l.flush()
	}
}

// pace offers the lookups due since pacing started, round robin over the
// loop's hosts, each to a random host's MAC.
func (l *simLoop) pace(now int64) {
	ps := l.sr.paceStart.Load()
	if ps == 0 || len(l.hosts) == 0 {
		return
	}
	if ps != l.paceFrom {
		l.paceFrom, l.paced = ps, 0
	}
	due := int64(l.rate*float64(now-ps)/1e9) - l.paced
	for ; due > 0; due-- {
		l.rnd ^= l.rnd << 13
		l.rnd ^= l.rnd >> 7
		l.rnd ^= l.rnd << 17
		h := l.hosts[l.next]
		l.next = (l.next + 1) % len(l.hosts)
		l.paced++
		if h.fd >= 0 {
			l.lookup(h, int(l.rnd%uint64(l.sr.o.Hosts)))
		}
	}
}

// lookup sends one VL2 lookup on h, in a free slot (the low 6 bits of
// the id), timed from its write.
func (l *simLoop) lookup(h *simHost, target int) {
	if h.used == ^uint64(0) {
		l.sr.skipped.Add(1)
		return
	}
	slot := bits.TrailingZeros64(^h.used)
	h.used |= 1 << slot
	h.seq++
	id := (h.seq<<6 | uint32(slot)) & 0x7fffffff
	h.ids[slot] = id
	h.sent[slot] = nanotime()
	if len(h.out) > 0 {
		h.out = svpwire.VL2Req{MAC: simMAC(target), VNetID: scaleVNet}.AppendFrame(h.out, id)
		l.markDirty(h)
		return
	}
	l.wbuf = svpwire.VL2Req{MAC: simMAC(target), VNetID: scaleVNet}.AppendFrame(l.wbuf[:0], id)
	l.write(h, l.wbuf)
}

const logCount = 16 << 10 // what the plugin asks for

func (l *simLoop) sendLogReq(h *simHost, now int64) {
	h.logSeq++
	h.logSent = now
	h.out = svpwire.LogReq{Count: logCount, IP: h.ip}.AppendFrame(h.out, 1<<31|h.logSeq&0x7fffffff)
	l.sr.logReqs.Add(1)
	l.markDirty(h)
}

func (l *simLoop) markDirty(h *simHost) {
	if !h.dirty {
		h.dirty = true
		l.dirty = append(l.dirty, h)
	}
}

// flush writes what the round queued.
func (l *simLoop) flush() {
	for _, h := range l.dirty {
		h.dirty = false
		if h.fd >= 0 && len(h.out) > 0 {
			out := h.out
			h.out = h.out[:0]
			l.write(h, out)
		}
	}
	l.dirty = l.dirty[:0]
}

// write writes b to h; what the socket does not take waits in h.out for
// EPOLLOUT. b may be h.out's own array.
func (l *simLoop) write(h *simHost, b []byte) {
	n, err := unix.Write(h.fd, b)
	if err != nil && !errors.Is(err, unix.EAGAIN) {
		l.lost(h, fmt.Errorf("write: %w", err))
		return
	}
	n = max(n, 0)
	if n == len(b) {
		if h.outOn {
			h.outOn = false
			l.ep.mod(h.fd, pollIn, h.key)
		}
		return
	}
	h.out = append(h.out[:0], b[n:]...) // copy handles b aliasing h.out
	if !h.outOn {
		h.outOn = true
		l.ep.mod(h.fd, pollIn|pollOut, h.key)
	}
}

// read reads what h's server sent and handles every whole frame.
func (l *simLoop) read(h *simHost) {
	n, err := unix.Read(h.fd, l.buf)
	if errors.Is(err, unix.EAGAIN) {
		return
	}
	if err != nil || n == 0 {
		if err == nil {
			err = errors.New("the server closed the connection")
		}
		l.lost(h, err)
		return
	}
	now := nanotime()
	data := l.buf[:n]
	if len(h.in) > 0 {
		h.in = append(h.in, data...)
		data = h.in
	}
	for len(data) > 0 {
		f, m, err := svpwire.Parse(data, 0)
		if err != nil {
			l.lost(h, err)
			return
		}
		if m == 0 {
			break
		}
		l.handle(h, f, now)
		if h.fd < 0 {
			return
		}
		data = data[m:]
	}
	h.in = append(h.in[:0], data...)
}

// lost closes h after an error, counted unless the run is ending.
func (l *simLoop) lost(h *simHost, err error) {
	sr := l.sr
	if !sr.stopping.Load() {
		sr.connErrs.Add(1)
		sr.fail(fmt.Errorf("host %v: %w", h.ip, err))
	}
	l.close(h)
}

func (l *simLoop) close(h *simHost) {
	if h.fd < 0 {
		return
	}
	l.ep.del(h.fd)
	unix.Close(h.fd)
	h.fd = -1
	if !h.ready {
		h.ready = true
		l.sr.readyWG.Done()
	}
}

// handle is h's reaction to one frame from its server.
func (l *simLoop) handle(h *simHost, f svpwire.Frame, now int64) {
	sr := l.sr
	switch f.Op {
	case svpwire.OpVL2Ack:
		slot := f.ID & 63
		ok := f.ID&(1<<31) == 0 && h.used&(1<<slot) != 0 && h.ids[slot] == f.ID
		if !ok {
			sr.lookupErrs.Add(1)
			return
		}
		h.used &^= 1 << slot
		ack, err := svpwire.DecodeVL2Ack(f.Body)
		if err != nil || ack.Status != svpwire.StatusOK {
			sr.lookupErrs.Add(1)
			return
		}
		if sr.measure.Load() {
			sr.lat.add(h.i, time.Duration(now-h.sent[slot]))
		}
	case svpwire.OpLogAck:
		elapsed := time.Duration(now - h.logSent)
		ack, err := svpwire.DecodeLogAck(f.Body)
		if !h.ready {
			h.ready = true
			if err == nil && ack.Status == svpwire.StatusOK {
				sr.readyOK.Add(1)
			}
			sr.readyWG.Done()
		}
		if err != nil || ack.Status != svpwire.StatusOK {
			sr.logErrs.Add(1)
			if err == nil {
				err = fmt.Errorf("status %v", ack.Status)
			}
			sr.fail(fmt.Errorf("host %v: LOG_ACK: %w", h.ip, err))
			l.later(h, now)
			return
		}
		if len(ack.Entries) == 0 {
			if sr.measure.Load() {
				sr.emptyLat.add(h.i, elapsed)
			}
			// A server that holds LOG_REQs answers an empty log only
			// after a while: ask again at once. One that answers at
			// once is polled every half second, as the plugin does.
			if elapsed >= 500*time.Millisecond {
				sr.held.Add(1)
				l.sendLogReq(h, now)
			} else {
				sr.quick.Add(1)
				l.later(h, now)
			}
			return
		}
		sr.entries.Add(uint64(len(ack.Entries)))
		ids := make([][16]byte, 0, len(ack.Entries))
		for _, e := range ack.Entries {
			ids = append(ids, e.ID)
			if k := moverIndex(e.MAC); e.Type == svpwire.LogVL2 && e.VNetID == scaleVNet && k >= 0 && k < sr.o.Changes && h.got&(1<<k) == 0 {
				h.got |= 1 << k
				if ts := sr.changeStart[k].Load(); ts != 0 {
					atomic.StoreInt64(&sr.arrive[k][h.i], max(1, now-ts))
					if sr.remaining[k].Add(-1) == 0 {
						close(sr.done[k])
					}
				}
			}
		}
		// The LOG_RM, then (on its ack) the next LOG_REQ.
		h.logSeq++
		h.out = svpwire.LogRm{IDs: ids}.AppendFrame(h.out, 1<<31|h.logSeq&0x7fffffff)
		l.markDirty(h)
	case svpwire.OpLogRmAck:
		if ack, err := svpwire.DecodeLogRmAck(f.Body); err != nil || ack.Status != svpwire.StatusOK {
			sr.logErrs.Add(1)
			sr.fail(fmt.Errorf("host %v: LOG_RM refused", h.ip))
			l.later(h, now)
			return
		}
		l.sendLogReq(h, now)
	default:
		sr.lookupErrs.Add(1)
	}
}

// later sends h's next LOG_REQ half a second from now.
func (l *simLoop) later(h *simHost, now int64) {
	heap.Push(&l.due, timer{at: now + int64(500*time.Millisecond), h: h})
}

// timer is a LOG_REQ to send at a time.
type timer struct {
	at int64
	h  *simHost
}

type timerHeap []timer

func (t timerHeap) Len() int           { return len(t) }
func (t timerHeap) Less(i, j int) bool { return t[i].at < t[j].at }
func (t timerHeap) Swap(i, j int)      { t[i], t[j] = t[j], t[i] }
func (t *timerHeap) Push(x any)        { *t = append(*t, x.(timer)) }
func (t *timerHeap) Pop() any {
	old := *t
	x := old[len(old)-1]
	*t = old[:len(old)-1]
	return x
}
