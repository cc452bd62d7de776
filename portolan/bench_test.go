package portolan

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"overlaynet/ether"
	"overlaynet/portolan/store"
	"overlaynet/svpwire"
)

// benchMACs is how many MACs the benchmark's Lookups map, all asked in
// turn.
const benchMACs = 1024

func benchMAC(i int) ether.MAC { return ether.MAC{2, 0, 0, 0, byte(i >> 8), byte(i)} }

func benchLookups() *mapLookups {
	l := newMapLookups()
	for i := range benchMACs {
		l.add(42, benchMAC(i), hostA)
	}
	return l
}

// benchRequests is a ring of VL2_REQ frames, one per mapped MAC, back to
// back: any run of them is a burst a client writes at once.
func benchRequests() []byte {
	var b []byte
	for i := range benchMACs {
		b = svpwire.VL2Req{MAC: benchMAC(i), VNetID: 42}.AppendFrame(b, uint32(i))
	}
	return b
}

// serveLookups starts a Server answering from l (and no store) on
// loopback and returns its address.
func serveLookups(tb testing.TB, l Lookups) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(tb, err)
	ctx, cancel := context.WithCancel(context.Background())
	srv := &Server{Lookups: l, LogHold: DefaultLogHold}
	done := make(chan struct{})
	go func() { srv.Serve(ctx, ln); close(done) }()
	tb.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}

// serveCeiling starts the least a server can be on loopback: one
// goroutine per connection that decodes VL2_REQs, answers them from a
// map and writes its answers before a read that would block. No
// deadlines, locks, counters or other requests.
func serveCeiling(tb testing.TB) string {
	m := map[vl2Key]store.Host{}
	for i := range benchMACs {
		m[vl2Key{42, benchMAC(i)}] = hostA
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(tb, err)
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := svpwire.NewReader(c, 0)
				out := make([]byte, 0, batchSize)
				for {
					if !r.Ready() && len(out) > 0 {
						if _, err := c.Write(out); err != nil {
							return
						}
						out = out[:0]
					}
					f, err := r.Next()
					if err != nil {
						return
					}
					q, err := svpwire.DecodeVL2Req(f.Body)
					if err != nil {
						return
					}
					h, ok := m[vl2Key{q.VNetID, ether.MAC(q.MAC)}]
					if !ok {
						out = svpwire.VL2Ack{Status: svpwire.StatusNotFound}.AppendFrame(out, f.ID)
						continue
					}
					out = svpwire.VL2Ack{Port: h.Port, Addr: h.IP}.AppendFrame(out, f.ID)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// pipeClient keeps window VL2 lookups in flight on one connection: a
// goroutine reads replies and hands back credits, one per reply, in
// batches; the caller's goroutine writes as many requests as it has
// credits for, in one write.
type pipeClient struct {
	c       net.Conn
	reqs    []byte
	pos     int // next request in reqs
	credits chan int
	window  int
}

func newPipeClient(tb testing.TB, addr string, window int) *pipeClient {
	c, err := net.Dial("tcp", addr)
	must(tb, err)
	tb.Cleanup(func() { c.Close() })
	p := &pipeClient{c: c, reqs: benchRequests(), credits: make(chan int, window), window: window}
	go func() {
		r := svpwire.NewReader(c, 0)
		n := 0
		for {
			f, err := r.Next()
			if err != nil {
				return
			}
			if f.Op != svpwire.OpVL2Ack || len(f.Body) != 20 || f.Body[1] != 0 {
				panic("bad reply " + f.Op.String())
			}
			n++
			if !r.Ready() {
				p.credits <- n
				n = 0
			}
		}
	}()
	return p
}

// run does n lookups and waits for all their answers.
func (p *pipeClient) run(tb testing.TB, n int) {
	const size = svpwire.HeaderLen + 12
	credit, sent, answered := p.window, 0, 0
	for answered < n {
		if k := min(credit, n-sent); k > 0 {
			// One write; a run that wraps the ring takes two.
			for k > 0 {
				m := min(k, benchMACs-p.pos)
				if _, err := p.c.Write(p.reqs[p.pos*size : (p.pos+m)*size]); err != nil {
					tb.Fatal(err)
				}
				p.pos = (p.pos + m) % benchMACs
				k -= m
				sent += m
				credit -= m
			}
		}
		got := <-p.credits
		credit += got
		answered += got
	}
}

// BenchmarkVL2Pipelined: VL2 lookups, 32 in flight on one loopback
// connection, answered by a Server from a map-based Lookups and by the
// bare ceiling server, alternating in chunks so that both see the same
// machine. Reports both rates and ours as a fraction of the ceiling
// (ns/op is the time of one lookup on each).
func BenchmarkVL2Pipelined(b *testing.B) {
	const window, chunk = 32, 4096
	ours := newPipeClient(b, serveLookups(b, benchLookups()), window)
	ceiling := newPipeClient(b, serveCeiling(b), window)
	ours.run(b, 2*chunk) // warm up both
	ceiling.run(b, 2*chunk)
	var tOurs, tCeiling time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += chunk {
		n := min(chunk, b.N-done)
		start := time.Now()
		ours.run(b, n)
		tOurs += time.Since(start)
		start = time.Now()
		ceiling.run(b, n)
		tCeiling += time.Since(start)
	}
	b.StopTimer()
	rOurs := float64(b.N) / tOurs.Seconds()
	rCeiling := float64(b.N) / tCeiling.Seconds()
	b.ReportMetric(rOurs, "lookups/s")
	b.ReportMetric(rCeiling, "ceiling-lookups/s")
	b.ReportMetric(rOurs/rCeiling, "ratio")
}

// TestLookupAllocs: a lookup answered from Lookups allocates nothing in
// the steady state, on either side of a loopback connection.
func TestLookupAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	addr := serveLookups(t, benchLookups())
	c, err := net.Dial("tcp", addr)
	must(t, err)
	defer c.Close()
	const burst = 8
	reqs := benchRequests()[:burst*(svpwire.HeaderLen+12)]
	replies := make([]byte, burst*(svpwire.HeaderLen+20))
	round := func() {
		if _, err := c.Write(reqs); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, replies); err != nil {
			t.Fatal(err)
		}
	}
	round()
	if a := testing.AllocsPerRun(1000, round); a != 0 {
		t.Errorf("%v allocations per %d pipelined lookups, want 0", a, burst)
	}
}
