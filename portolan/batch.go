package portolan

import "sync"

// batcher runs, as one call, the requests that arrive while a call runs
// (group commit): after a change every host reads its log and removes
// what it got at once, and a store query each would make the last of
// thousands of hosts wait for all the others.
type batcher[T any] struct {
	// run does a batch of requests, each done on return.
	run func(batch []*T)
	// weight is a request's share of max, the most a batch carries.
	weight func(*T) int
	max    int

	mu      sync.Mutex
	pending []*T
	running bool // a goroutine is running batches
}

// add queues r; a batch runs it soon. The caller waits for r to be done
// in its own way (a channel in T).
func (b *batcher[T]) add(r *T) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pending = append(b.pending, r)
	if !b.running {
		b.running = true
		go b.loop()
	}
}

// loop runs batches until none is pending. It is a goroutine of its own
// so that no request waits for batches after its own.
func (b *batcher[T]) loop() {
	b.mu.Lock()
	for len(b.pending) > 0 {
		n, cut := 0, 0
		for cut < len(b.pending) && (cut == 0 || n+b.weight(b.pending[cut]) <= b.max) {
			n += b.weight(b.pending[cut])
			cut++
		}
		batch := b.pending[:cut:cut]
		b.pending = b.pending[cut:]
		b.mu.Unlock()
		b.run(batch)
		b.mu.Lock()
	}
	b.pending = nil // let the backing array go
	b.running = false
	b.mu.Unlock()
}
