package svp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	proto "overlaynet/svp"
)

// Connection timing.
const (
	dialTimeout = 3 * time.Second
	// backoff after failed connects: 100 ms doubling to maxBackoff. A
	// restarted server is found again within that (illumos: 1-32 s).
	minBackoff = 100 * time.Millisecond
	maxBackoff = 4 * time.Second
)

var errConnDown = errors.New("connection to the mapping server is down")

// reply is what a pending request gets: a body copy, or an error.
type reply struct {
	op   proto.Op
	body []byte
	err  error
}

// conn is one TCP connection to one address of the mapping service, kept
// up (redialled with backoff) until closed. Requests are pipelined and
// matched to replies by id, in any order.
type conn struct {
	addr   netip.AddrPort
	remote *remote

	mu      sync.Mutex
	c       net.Conn // nil while down
	w       *bufio.Writer
	pending map[uint32]chan reply
	// abandoned are ids whose caller gave up: their late replies are
	// dropped rather than taken for protocol errors.
	abandoned map[uint32]bool
	nextID    uint32
	lastErr   error
	attempts  int // failed connects since the last success
	closed    bool
	quit      chan struct{} // closed by close
	done      chan struct{} // closed when run ends
}

func newConn(r *remote, addr netip.AddrPort) *conn {
	c := &conn{addr: addr, remote: r, pending: map[uint32]chan reply{},
		quit: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c
}

// up reports whether the connection is established.
func (c *conn) up() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.c != nil
}

// run keeps the connection up until close.
func (c *conn) run() {
	defer close(c.done)
	backoff := minBackoff
	for {
		c.mu.Lock()
		closed := c.closed
		c.mu.Unlock()
		if closed {
			return
		}
		nc, err := net.DialTimeout("tcp", c.addr.String(), dialTimeout)
		if err != nil {
			c.mu.Lock()
			c.lastErr, c.attempts = err, c.attempts+1
			c.mu.Unlock()
			c.remote.stateChanged()
			if !c.sleep(backoff) {
				return
			}
			backoff = min(backoff*2, maxBackoff)
			continue
		}
		backoff = minBackoff
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			nc.Close()
			return
		}
		c.c, c.w, c.attempts, c.lastErr = nc, bufio.NewWriter(nc), 0, nil
		c.mu.Unlock()
		c.remote.log.Info("svp: connected to mapping server", "server", c.addr.String())
		c.remote.stateChanged()
		err = c.read(nc)
		c.mu.Lock()
		c.c, c.w, c.lastErr = nil, nil, err
		for id, ch := range c.pending {
			ch <- reply{err: fmt.Errorf("%w: %v", errConnDown, err)}
			delete(c.pending, id)
		}
		closed = c.closed
		c.mu.Unlock()
		nc.Close()
		if !closed {
			c.remote.log.Warn("svp: lost mapping server", "server", c.addr.String(), "err", err)
		}
		c.remote.stateChanged()
	}
}

func (c *conn) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return true
		case <-c.quit:
			return false
		}
	}
}

// read hands replies to their requests until the connection fails. A
// reply that is malformed, unexpected or for no pending request resets
// the connection, as illumos does.
func (c *conn) read(nc net.Conn) error {
	r := proto.NewReader(nc, proto.MaxBody)
	for {
		f, err := r.Next()
		if err != nil {
			return err
		}
		if f.Op == proto.OpShootdown {
			// One way from server to client; not used by portolan, but
			// harmless to honour.
			if m, err := proto.DecodeShootdown(f.Body); err == nil {
				c.remote.shootdown(m.VNetID, m.MAC)
			}
			continue
		}
		c.mu.Lock()
		ch, ok := c.pending[f.ID]
		if ok {
			delete(c.pending, f.ID)
		}
		late := c.abandoned[f.ID]
		delete(c.abandoned, f.ID)
		c.mu.Unlock()
		if late {
			continue
		}
		if !ok {
			return fmt.Errorf("reply %s with id %d matches no request", f.Op, f.ID)
		}
		ch <- reply{op: f.Op, body: append([]byte(nil), f.Body...)}
	}
}

// call sends one request and waits for its reply.
func (c *conn) call(ctx context.Context, build func(dst []byte, id uint32) []byte, want proto.Op) ([]byte, error) {
	ch := make(chan reply, 1)
	c.mu.Lock()
	if c.c == nil {
		c.mu.Unlock()
		return nil, errConnDown
	}
	c.nextID++
	id := c.nextID
	c.pending[id] = ch
	nc, w := c.c, c.w
	// A server that stops reading must not wedge every caller behind
	// this lock.
	nc.SetWriteDeadline(time.Now().Add(requestTimeout))
	w.Write(build(nil, id))
	err := w.Flush()
	c.mu.Unlock()
	if err != nil {
		nc.Close() // the reader notices and fails every pending request
		return nil, err
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		if r.op != want {
			nc.Close()
			return nil, fmt.Errorf("server answered %s to a request wanting %s", r.op, want)
		}
		return r.body, nil
	case <-ctx.Done():
		c.mu.Lock()
		if _, waiting := c.pending[id]; waiting {
			delete(c.pending, id)
			if c.abandoned == nil || len(c.abandoned) > 4096 {
				c.abandoned = map[uint32]bool{}
			}
			c.abandoned[id] = true
		}
		c.mu.Unlock()
		return nil, ctx.Err()
	}
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
