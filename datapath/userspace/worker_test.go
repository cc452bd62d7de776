package userspace

import (
	"log/slog"
	"os"
	"testing"
	"time"
)

// pipeSource drains a pipe and reports each drain.
type pipeSource struct {
	r      *os.File
	drains chan int
}

func (p pipeSource) drain(sc *scratch, budget int) bool {
	n, _ := p.r.Read(sc.buf)
	p.drains <- n
	return true
}

func TestWorkerDrainsAndStops(t *testing.T) {
	w, err := newWorker(slog.New(slog.DiscardHandler), 0, false)
	if err != nil {
		t.Fatal(err)
	}
	r, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer wr.Close()
	src := pipeSource{r: r, drains: make(chan int, 10)}
	fd := int(r.Fd())
	id, err := w.watch(fd, src)
	if err != nil {
		t.Fatal(err)
	}
	wr.Write([]byte("hello"))
	select {
	case n := <-src.drains:
		if n != 5 {
			t.Errorf("drained %d bytes, want 5", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a ready descriptor was not drained")
	}
	w.unwatch(id)
	wr.Write([]byte("again"))
	select {
	case <-src.drains:
		t.Error("an unwatched descriptor was drained")
	case <-time.After(100 * time.Millisecond):
	}

	// Once the worker is gone, control requests return instead of
	// waiting for it forever.
	w.stop()
	done := make(chan error)
	go func() {
		w.unwatch(id)
		_, err := w.watch(fd, src)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Error("watch on a stopped worker succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("control requests hang once the worker has stopped")
	}
}
