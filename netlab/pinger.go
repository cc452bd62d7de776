package netlab

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Pinger is a ping running in a namespace, whose replies a test can wait
// for as they arrive: to disturb the overlay only once traffic is seen to
// flow, rather than after a guessed delay.
type Pinger struct {
	mu      sync.Mutex
	out     strings.Builder
	replies int
	done    chan struct{}
	err     error
	cancel  context.CancelFunc
}

// StartPing starts ping to addr, count times, interval seconds apart, each
// reply awaited at most a second.
func (n *NS) StartPing(addr string, count int, interval float64) (*Pinger, error) {
	ctx, cancel := context.WithCancel(context.Background())
	cmd := n.Command(ctx, "ping", "-c", strconv.Itoa(count), "-i", strconv.FormatFloat(interval, 'f', -1, 64), "-W", "1", addr)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("ping %s from %s: %w", addr, n.Name, err)
	}
	p := &Pinger{done: make(chan struct{}), cancel: cancel}
	go func() {
		// ping writes a line per reply as it arrives, also into a pipe.
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.out.WriteString(line + "\n")
			if strings.Contains(line, " bytes from ") {
				p.replies++
			}
			p.mu.Unlock()
		}
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// Replies returns how many replies arrived so far.
func (p *Pinger) Replies() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.replies
}

// WaitReplies waits until at least k replies arrived. It fails when ping
// ends first or timeout passes.
func (p *Pinger) WaitReplies(k int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for p.Replies() < k {
		select {
		case <-p.done:
			if p.Replies() >= k {
				return nil
			}
			return fmt.Errorf("ping ended with %d replies, before %d arrived:\n%s", p.Replies(), k, p.output())
		case <-time.After(10 * time.Millisecond): // between polls
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d replies after %v:\n%s", p.Replies(), k, timeout, p.output())
		}
	}
	return nil
}

// Running reports whether ping is still pinging.
func (p *Pinger) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Wait waits for ping to end and returns the number of replies its
// summary gives, and its output.
func (p *Pinger) Wait() (int, string, error) {
	<-p.done
	p.cancel()
	out := p.output()
	m := received.FindStringSubmatch(out)
	if m == nil {
		return 0, out, fmt.Errorf("ping: %v: unexpected output %q", p.err, out)
	}
	got, _ := strconv.Atoi(m[1])
	return got, out, nil
}

// Stop ends ping early and waits for it.
func (p *Pinger) Stop() {
	p.cancel()
	<-p.done
}

func (p *Pinger) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}
