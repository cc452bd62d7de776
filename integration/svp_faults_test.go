package integration

import (
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"overlaynet/netlab"
	"overlaynet/svpwire"
)

// TestSVPServerStopped: portolan stopped with SIGSTOP keeps its sockets
// and answers nothing. The overlays go DEGRADED within the bound with the
// "not answering" reason, cached traffic keeps flowing, and after SIGCONT
// they are ONLINE again; the server saw no connection closed while it had
// requests in flight, nor any new connection.
func TestSVPServerStopped(t *testing.T) {
	mainPassOnly(t)
	need(t, "ping")
	f := newSVPNet(t, 2, "", 1)
	g1 := f.vnic(t, 0, 1, "10.8.0.1", "", true)
	f.vnic(t, 1, 2, "10.8.0.2", "", true)
	must(t, g1.PingAll("10.8.0.2", 2))
	waitStatus(t, f.ds[0], "ONLINE")
	p := f.ps[0].Proc.Cmd.Process
	opened := strings.Count(f.ps[0].Proc.Output(), "connection opened")

	must(t, p.Signal(syscall.SIGSTOP))
	stopped := time.Now()
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			p.Signal(syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)
	// A destination not resolved yet: its ARP needs a VL3 lookup, which
	// stays outstanding.
	go g1.Ping("10.8.0.3", 1)
	details := waitStatus(t, f.ds[0], "DEGRADED", "is not answering", portolanIP, "port 1296", "no answer for more than")
	took := time.Since(stopped)
	t.Logf("DEGRADED %v after SIGSTOP: %s", took.Round(time.Millisecond), strings.TrimSpace(details))
	// 3 s without an answer, checked every 0.5 s, plus the first request
	// after the stop.
	if took > 6*time.Second {
		t.Errorf("DEGRADED only %v after the server stopped, want within 6 s", took)
	}
	must(t, g1.PingAll("10.8.0.2", 3)) // cached: ARP in the guests, targets in overlayd
	// Well past the old 1.5 s request timeout that closed connections.
	for time.Since(stopped) < 8*time.Second {
		must(t, g1.PingAll("10.8.0.2", 1))
	}
	resume()
	waitStatus(t, f.ds[0], "ONLINE")
	waitStatus(t, f.ds[1], "ONLINE")
	must(t, g1.PingAll("10.8.0.2", 2))

	out := f.ps[0].Proc.Output()
	if strings.Contains(out, "client closed a connection with requests in flight") {
		t.Errorf("portolan saw a connection closed with requests in flight:\n%s", grepLines(out, "in flight"))
	}
	if n := strings.Count(out, "connection opened"); n != opened {
		t.Errorf("%d new connections to portolan across the stop, want none", n-opened)
	}
	for i, d := range f.ds {
		if l := d.Proc.Output(); strings.Contains(l, "lost mapping server") || strings.Contains(l, "no progress") {
			t.Errorf("host %d dropped its connection:\n%s", i+1, grepLines(l, "mapping server", "no progress"))
		}
	}
}

// TestSVPServerClosesOnLogReq: a mapping server that closes the
// connection on every LOG_REQ (as Triton's json store dies of one), here
// a proxy in front of our portolan. Lookups are still answered, the
// overlay is DEGRADED with a reason naming the log, and log polling backs
// off instead of reconnecting all the time.
func TestSVPServerClosesOnLogReq(t *testing.T) {
	mainPassOnly(t)
	need(t, "ping")
	// The first LOG_REQ after 1 s, so the backoff shows within the test.
	t.Setenv(netlab.ExtraArgsEnv, os.Getenv(netlab.ExtraArgsEnv)+" --svp-log-delay=1s")
	f := newSVPNet(t, 2, "", 1, "-p", "svp/port=1297")
	px, err := startLogClosingProxy(f.ps[0].NS, portolanIP+":1297", portolanIP+":1296")
	must(t, err)
	t.Cleanup(px.close)
	g1 := f.vnic(t, 0, 1, "10.8.0.1", "", true)
	f.vnic(t, 1, 2, "10.8.0.2", "", true)
	must(t, g1.PingAll("10.8.0.2", 2))
	details := waitStatus(t, f.ds[0], "DEGRADED", "LOG_REQ", "lookups are answered", "backed off")
	t.Logf("reason: %s", strings.TrimSpace(details))

	// Lookups are answered: VL2 after the target table is flushed, and
	// VL3 after the guest forgets its neighbours.
	_, err = f.ds[0].Adm("modify-overlay", "-f", "ov0")
	must(t, err)
	_, err = g1.IP("neigh", "flush", "all")
	must(t, err)
	must(t, g1.PingAll("10.8.0.2", 2))

	// No reconnect storm: polling every 0.5 s with a reconnect each
	// time would be about 24 connections from the two hosts in 6 s.
	a0, l0 := px.accepts.Load(), px.logReqs.Load()
	window := 6 * time.Second
	time.Sleep(window) // a measurement window, not a wait for readiness
	accepts, logReqs := px.accepts.Load()-a0, px.logReqs.Load()-l0
	t.Logf("in %v: %d connections, %d LOG_REQs (total %d, %d)", window, accepts, logReqs, px.accepts.Load(), px.logReqs.Load())
	if accepts > 6 || logReqs > 6 {
		t.Errorf("in %v: %d connections and %d LOG_REQs from two hosts: log polling does not back off", window, accepts, logReqs)
	}
	must(t, g1.PingAll("10.8.0.2", 2))
	if r, _ := f.ds[0].Adm("show-overlay", "-f", "-p", "-o", "details", "ov0"); !strings.Contains(r, "LOG_REQ") {
		t.Errorf("reason %q no longer names the log", r)
	}
}

// logClosingProxy forwards SVP to a backend, but closes the connection
// on any LOG_REQ.
type logClosingProxy struct {
	ln      net.Listener
	accepts atomic.Int32
	logReqs atomic.Int32
	mu      sync.Mutex
	conns   []net.Conn
	wg      sync.WaitGroup
}

func startLogClosingProxy(ns *netlab.NS, listen, backend string) (*logClosingProxy, error) {
	px := &logClosingProxy{}
	err := ns.Do(func() error {
		var err error
		px.ln, err = net.Listen("tcp", listen)
		return err
	})
	if err != nil {
		return nil, err
	}
	px.wg.Add(1)
	go func() {
		defer px.wg.Done()
		for {
			c, err := px.ln.Accept()
			if err != nil {
				return
			}
			px.accepts.Add(1)
			var b net.Conn
			if err := ns.Do(func() error {
				var err error
				b, err = net.DialTimeout("tcp", backend, 3*time.Second)
				return err
			}); err != nil {
				c.Close()
				continue
			}
			px.mu.Lock()
			px.conns = append(px.conns, c, b)
			px.mu.Unlock()
			px.wg.Add(2)
			go func() {
				defer px.wg.Done()
				io.Copy(c, b)
				c.Close()
			}()
			go func() {
				defer px.wg.Done()
				defer b.Close()
				defer c.Close()
				r := svpwire.NewReader(c, 0)
				for {
					f, err := r.Next()
					if err != nil {
						return
					}
					if f.Op == svpwire.OpLogReq {
						px.logReqs.Add(1)
						return
					}
					if _, err := b.Write(svpwire.AppendFrame(nil, f.Op, f.ID, f.Body)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return px, nil
}

func (px *logClosingProxy) close() {
	px.ln.Close()
	px.mu.Lock()
	for _, c := range px.conns {
		c.Close()
	}
	px.mu.Unlock()
	px.wg.Wait()
}

// grepLines returns the lines of s that contain any of subs.
func grepLines(s string, subs ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, sub := range subs {
			if strings.Contains(l, sub) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
