package userspace

import (
	"fmt"
	"log/slog"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"

	"overlaynet/datapath/offload"
)

// A worker moves frames: one goroutine waiting in its own epoll set on
// its queue of every TAP and its socket of every underlay listen address,
// which drains whatever is ready before it sleeps again. There are
// Options.Workers of them; the kernel keeps each flow with one.
//
// One goroutine per descriptor, parked in the Go runtime's poller, was
// the first design. Measured on the 2-vCPU machines this runs on, it
// spent more time waking threads and handing goroutines between them
// than moving data: every super-frame woke the TAP reader, every
// acknowledgement the socket reader, and each wake-up could land on
// another thread. A worker handles both directions of each of its flows
// on one thread: a frame that arrives while it is busy costs no wake-up,
// and a wake-up finds a batch waiting. Single-stream TCP went up by about
// a quarter.
type worker struct {
	log    *slog.Logger
	batch  bool // run under SCHED_BATCH (Options.Sched)
	epfd   int
	wakefd int // an eventfd: control requests are waiting

	mu    sync.Mutex
	queue []func() // control requests, run by the worker between batches

	// Owned by the worker goroutine.
	sources map[int32]watched
	nextID  int32
	scratch *scratch

	done chan struct{}
}

// watched is a descriptor in the worker's set and what drains it.
type watched struct {
	fd  int
	src source
}

// A source is a descriptor the worker waits on.
type source interface {
	// drain handles up to budget reads of what is waiting. It returns
	// false when the descriptor is dead and must be dropped.
	drain(sc *scratch, budget int) bool
}

// scratch is a worker's working space, shared by its sources: frames are
// handled one at a time, to the end, so one set of buffers serves.
type scratch struct {
	q   int    // the worker's index
	buf []byte // one frame or super-frame, behind its headroom
	tx  *txScratch
	rx  *rxBatch
	oob []byte
	msg recvMsg
}

// budget bounds the reads from one source per turn, so that one busy
// source cannot starve the others: 64, as the kernel's NAPI weight. With
// 16, one TCP stream was slower by a tenth: more turns through epoll, and
// shorter runs for the receive side to coalesce.
const budget = 64

// wakeID marks the eventfd in the epoll set.
const wakeID = -1

func newWorker(log *slog.Logger, q int, batch bool) (*worker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("data path worker: epoll: %w", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("data path worker: eventfd: %w", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: wakeID}); err != nil {
		unix.Close(epfd)
		unix.Close(wakefd)
		return nil, fmt.Errorf("data path worker: epoll: %w", err)
	}
	w := &worker{log: log, batch: batch, epfd: epfd, wakefd: wakefd, sources: map[int32]watched{}, done: make(chan struct{}),
		scratch: &scratch{q: q, buf: make([]byte, headroom+maxFrame), tx: newTxScratch(q),
			rx: &rxBatch{q: q, c: offload.NewCoalescer()}, oob: make([]byte, 64)}}
	go w.run()
	return w, nil
}

func (w *worker) run() {
	defer close(w.done)
	if w.batch {
		// The policy belongs to a thread: keep the worker on this one,
		// and let no other goroutine run on it (the thread ends with
		// the worker, never unlocked).
		runtime.LockOSThread()
		if err := unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_BATCH}, 0); err != nil {
			w.log.Warn("cannot give the data path worker the batch scheduling policy; it keeps the normal one", "err", err)
		}
	}
	events := make([]unix.EpollEvent, 64)
	for {
		n, err := unix.EpollWait(w.epfd, events, -1)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			w.log.Error("data path worker: epoll_wait failed; frames are no longer moved", "err", err)
			return
		}
		for _, ev := range events[:n] {
			if ev.Fd == wakeID {
				if !w.control() {
					return
				}
				continue
			}
			s, ok := w.sources[ev.Fd]
			if !ok {
				continue // dropped earlier in this batch
			}
			if !s.src.drain(w.scratch, budget) {
				w.unwatchNow(ev.Fd)
			}
		}
	}
}

// control runs the queued control requests; false means stop.
func (w *worker) control() bool {
	var b [8]byte
	unix.Read(w.wakefd, b[:])
	w.mu.Lock()
	q := w.queue
	w.queue = nil
	w.mu.Unlock()
	for _, fn := range q {
		if fn == nil {
			return false
		}
		fn()
	}
	return true
}

// do runs fn on the worker, between two batches, and waits for it: when
// do returns, the worker is not in the middle of any frame.
func (w *worker) do(fn func()) {
	done := make(chan struct{})
	w.enqueue(func() { fn(); close(done) })
	<-done
}

func (w *worker) enqueue(fn func()) {
	w.mu.Lock()
	w.queue = append(w.queue, fn)
	w.mu.Unlock()
	var one [8]byte
	one[0] = 1 // an eventfd counter is a host-order uint64; amd64 and arm64 are little-endian
	unix.Write(w.wakefd, one[:])
}

// watch adds fd to the worker's set, to be drained by src, and returns
// the id to unwatch it with.
func (w *worker) watch(fd int, src source) (int32, error) {
	var id int32
	var err error
	w.do(func() {
		w.nextID++
		id = w.nextID
		if err = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: id}); err != nil {
			return
		}
		w.sources[id] = watched{fd: fd, src: src}
	})
	if err != nil {
		return 0, fmt.Errorf("data path worker: watch descriptor: %w", err)
	}
	return id, nil
}

// unwatch drops a source. When it returns the worker no longer touches
// the source's descriptor, which may then be closed.
func (w *worker) unwatch(id int32) { w.do(func() { w.unwatchNow(id) }) }

func (w *worker) unwatchNow(id int32) {
	s, ok := w.sources[id]
	if !ok {
		return
	}
	delete(w.sources, id)
	unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, s.fd, nil)
}

// stop ends the worker; every source must have been unwatched.
func (w *worker) stop() {
	w.enqueue(nil)
	<-w.done
	unix.Close(w.epfd)
	unix.Close(w.wakefd)
}
