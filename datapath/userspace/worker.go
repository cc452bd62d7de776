package userspace

import (
	"encoding/binary"
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

	mu     sync.Mutex
	queue  []func() // control requests, run by the worker between batches
	exited bool     // the loop has ended: requests run in the caller

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

func newScratch(q int) *scratch {
	return &scratch{q: q, buf: make([]byte, headroom+maxFrame), tx: newTxScratch(q),
		rx: &rxBatch{q: q, c: offload.NewCoalescer()}, oob: make([]byte, 64)}
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
		scratch: newScratch(q)}
	go w.run()
	return w, nil
}

func (w *worker) run() {
	defer w.exit()
	if w.batch {
		// The policy belongs to a thread: keep the worker on this one,
		// and let no other goroutine run on it (the thread ends with
		// the worker, never unlocked). Only the policy changes; the
		// nice value the daemon was started with stays.
		runtime.LockOSThread()
		attr, err := unix.SchedGetAttr(0, 0)
		if err == nil {
			attr.Policy = unix.SCHED_BATCH
			err = unix.SchedSetAttr(0, attr, 0)
		}
		if err != nil {
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
	more := true
	for _, fn := range q {
		if fn == nil {
			more = false
			continue
		}
		fn()
	}
	return more
}

// exit marks the loop ended and runs what was queued for it, so that no
// caller waits for a worker that is gone (stopped, or failed).
func (w *worker) exit() {
	w.mu.Lock()
	w.exited = true
	for _, fn := range w.queue {
		if fn != nil {
			fn()
		}
	}
	w.queue = nil
	w.mu.Unlock()
	close(w.done)
}

// do runs fn on the worker, between two batches, and waits for it: when
// do returns, the worker is not in the middle of any frame. Once the loop
// has ended, fn runs at once, in the caller.
func (w *worker) do(fn func()) {
	w.mu.Lock()
	if w.exited {
		defer w.mu.Unlock()
		fn()
		return
	}
	done := make(chan struct{})
	w.queue = append(w.queue, func() { fn(); close(done) })
	w.signal()
	w.mu.Unlock()
	<-done
}

// signal wakes the loop; the caller holds w.mu and the loop has not
// ended, so the eventfd is still open.
func (w *worker) signal() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
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

// stop ends the worker. Sources still watched are left alone: their
// descriptors belong to their owners.
func (w *worker) stop() {
	w.mu.Lock()
	if !w.exited {
		w.queue = append(w.queue, nil)
		w.signal()
	}
	w.mu.Unlock()
	<-w.done
	w.mu.Lock()
	unix.Close(w.epfd)
	unix.Close(w.wakefd)
	w.epfd, w.wakefd = -1, -1
	w.mu.Unlock()
}
