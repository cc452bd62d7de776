package index

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"overlaynet/ether"
	"overlaynet/portolan"
	"overlaynet/portolan/store"
)

var (
	_ portolan.Lookups = (*Index)(nil)
	_ portolan.Lookups = Reader{}
)

var (
	h1 = store.Host{ID: "h1", IP: netip.MustParseAddr("198.18.0.1"), Port: 4789}
	h2 = store.Host{ID: "h2", IP: netip.MustParseAddr("fd00:100::2"), Port: 4790}
	h3 = store.Host{ID: "h3", IP: netip.MustParseAddr("198.18.0.3"), Port: 4789}

	m1 = ether.MAC{2, 8, 0x20, 0, 0, 1}
	m2 = ether.MAC{2, 8, 0x20, 0, 0, 2}
	m3 = ether.MAC{2, 8, 0x20, 0, 0, 3}

	admin = netip.MustParseAddr("10.0.0.9")
)

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// sample returns a feed with three hosts and three VNICs.
func sample() *fakeFeed {
	f := newFake()
	f.putHost(h1, admin)
	f.putHost(h2, admin, ip("10.0.0.2"))
	f.putHost(h3)
	f.addVNIC(7, m1, "h1", ip("10.1.0.1"), ip("fd00:7::1"))
	f.addVNIC(7, m2, "h2", ip("10.1.0.2"))
	f.addVNIC(8, m1, "h3")
	return f
}

func load(t *testing.T, f store.Feed) *Index {
	t.Helper()
	ix, err := Load(context.Background(), f, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func update(t *testing.T, ix *Index) {
	t.Helper()
	if err := ix.Update(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func wantVL2(t *testing.T, ix *Index, vnet uint32, mac ether.MAC, want store.Host, wantOK bool) {
	t.Helper()
	h, ok := ix.VL2(vnet, mac)
	if h != want || ok != wantOK {
		t.Errorf("VL2(%d, %s) = %v %v, want %v %v", vnet, macString(mac), h, ok, want, wantOK)
	}
}

func wantVL3(t *testing.T, ix *Index, vnet uint32, a netip.Addr, wantMAC ether.MAC, want store.Host, wantOK bool) {
	t.Helper()
	mac, h, ok := ix.VL3(vnet, a)
	if mac != wantMAC || h != want || ok != wantOK {
		t.Errorf("VL3(%d, %s) = %s %v %v, want %s %v %v", vnet, a, macString(mac), h, ok, macString(wantMAC), want, wantOK)
	}
}

func ids(hs []store.Host) string {
	var s []string
	for _, h := range hs {
		s = append(s, h.ID)
	}
	return strings.Join(s, ",")
}

// sameAsFresh checks that ix holds what a fresh load of f holds.
func sameAsFresh(t *testing.T, ix *Index, f store.Feed) {
	t.Helper()
	if d := Diff(ix, load(t, f)); len(d) > 0 {
		t.Errorf("index differs from a fresh load:\n%s", strings.Join(d, "\n"))
	}
}

// reported records the log signals an index reports closed
// (OnLogSignals).
type reported struct {
	mu  sync.Mutex
	set map[<-chan struct{}]bool
}

func report(ix *Index) *reported {
	r := &reported{set: map[<-chan struct{}]bool{}}
	ix.OnLogSignals(func(cs []<-chan struct{}) {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, c := range cs {
			if !closed(c) {
				panic("OnLogSignals reported a signal not closed yet")
			}
			r.set[c] = true
		}
	})
	return r
}

// has reports whether c was reported closed.
func (r *reported) has(c <-chan struct{}) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.set[c]
}

func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func TestLoad(t *testing.T) {
	f := sample()
	ix := load(t, f)
	wantVL2(t, ix, 7, m1, h1, true)
	wantVL2(t, ix, 7, m2, h2, true)
	wantVL2(t, ix, 8, m1, h3, true)
	wantVL2(t, ix, 8, m2, store.Host{}, false)
	wantVL2(t, ix, 9, m1, store.Host{}, false)
	wantVL3(t, ix, 7, ip("10.1.0.1"), m1, h1, true)
	wantVL3(t, ix, 7, ip("::ffff:10.1.0.1"), m1, h1, true) // IPv4-mapped
	wantVL3(t, ix, 7, ip("fd00:7::1"), m1, h1, true)
	wantVL3(t, ix, 7, ip("10.1.0.2"), m2, h2, true)
	wantVL3(t, ix, 8, ip("10.1.0.1"), ether.MAC{}, store.Host{}, false)
	wantVL3(t, ix, 7, netip.Addr{}, ether.MAC{}, store.Host{}, false)
	if s := ix.Status(); s.Seq != 9 || s.Hosts != 3 || s.VL2 != 3 || s.VL3 != 3 || s.Err != nil {
		t.Errorf("Status = %+v", s)
	}
	var b bytes.Buffer
	if err := ix.Dump(&b); err != nil {
		t.Fatal(err)
	}
	want := `seq 9
host h1 198.18.0.1 4789 10.0.0.9
host h2 fd00:100::2 4790 10.0.0.2,10.0.0.9
host h3 198.18.0.3 4789 -
vl2 7 2:8:20:0:0:1 h1
vl2 7 2:8:20:0:0:2 h2
vl2 8 2:8:20:0:0:1 h3
vl3 7 10.1.0.1 2:8:20:0:0:1
vl3 7 10.1.0.2 2:8:20:0:0:2
vl3 7 fd00:7::1 2:8:20:0:0:1
`
	if b.String() != want {
		t.Errorf("Dump:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestHostsFrom(t *testing.T) {
	f := sample()
	ix := load(t, f)
	for _, c := range []struct {
		src  string
		want string
	}{
		{"198.18.0.1", "h1"},
		{"::ffff:198.18.0.1", "h1"}, // IPv4-mapped: the IPv4 address
		{"fd00:100::2", "h2"},
		{"10.0.0.9", "h1,h2"}, // a source of two hosts, sorted by ID
		{"::ffff:10.0.0.9", "h1,h2"},
		{"10.0.0.2", "h2"},
		{"198.18.0.3", "h3"},
		{"10.0.0.3", ""},
		{"::", ""},
	} {
		got := ix.HostsFrom(ip(c.src))
		if ids(got) != c.want {
			t.Errorf("HostsFrom(%s) = %v, want %s", c.src, got, c.want)
		}
		if c.want == "" && got != nil {
			t.Errorf("HostsFrom(%s) = %#v, want nil", c.src, got)
		}
	}
	// A host listing its own underlay address as a source, and an
	// address that is one host's underlay IP and another's source, are
	// each there once.
	f.putHost(h3, h3.IP, h1.IP)
	update(t, ix)
	if got := ids(ix.HostsFrom(h3.IP)); got != "h3" {
		t.Errorf("HostsFrom(h3) = %s", got)
	}
	if got := ix.HostsFrom(h1.IP); ids(got) != "h1,h3" || got[0] != h1 || got[1] != h3 {
		t.Errorf("HostsFrom(h1) = %v", got)
	}
	// The slice is the caller's.
	got := ix.HostsFrom(h1.IP)
	got[0].ID = "mangled"
	if got := ids(ix.HostsFrom(h1.IP)); got != "h1,h3" {
		t.Errorf("HostsFrom after the caller changed its slice = %s", got)
	}
}

func TestChangeHost(t *testing.T) {
	f := sample()
	ix := load(t, f)
	moved := store.Host{ID: "h1", IP: ip("198.18.0.11"), Port: 4791}
	f.putHost(moved) // new address and port; no sources now
	h4 := store.Host{ID: "h4", IP: ip("198.18.0.4"), Port: 4789}
	f.putHost(h4, ip("10.0.0.4"))
	update(t, ix)
	wantVL2(t, ix, 7, m1, moved, true)
	wantVL3(t, ix, 7, ip("10.1.0.1"), m1, moved, true)
	if got := ids(ix.HostsFrom(admin)); got != "h2" {
		t.Errorf("HostsFrom(admin) after h1 lost it = %s", got)
	}
	if got := ids(ix.HostsFrom(ip("198.18.0.1"))); got != "" {
		t.Errorf("HostsFrom(h1's old address) = %s", got)
	}
	if got := ids(ix.HostsFrom(ip("10.0.0.4"))); got != "h4" {
		t.Errorf("HostsFrom(h4's source) = %s", got)
	}
	// A VNIC on the new host.
	f.addVNIC(9, m3, "h4")
	update(t, ix)
	wantVL2(t, ix, 9, m3, h4, true)
	// Removed (after its VNIC).
	f.removeVNIC(9, m3)
	f.removeHost("h4")
	update(t, ix)
	wantVL2(t, ix, 9, m3, store.Host{}, false)
	if got := ix.HostsFrom(h4.IP); got != nil {
		t.Errorf("HostsFrom(removed host) = %v", got)
	}
	// Back again.
	f.putHost(h4)
	f.addVNIC(9, m3, "h4")
	update(t, ix)
	wantVL2(t, ix, 9, m3, h4, true)
	if s := ix.Status(); s.Hosts != 4 || s.Seq != f.seq {
		t.Errorf("Status = %+v", s)
	}
	sameAsFresh(t, ix, f)
}

func TestChangeVNICAndIP(t *testing.T) {
	f := sample()
	ix := load(t, f)
	f.addVNIC(7, m3, "h3", ip("10.1.0.3"), ip("::ffff:10.1.0.33"))
	f.moveVNIC(7, m1, "h2")
	f.removeVNIC(7, m2)
	update(t, ix)
	wantVL2(t, ix, 7, m3, h3, true)
	wantVL2(t, ix, 7, m1, h2, true)
	wantVL2(t, ix, 7, m2, store.Host{}, false)
	wantVL3(t, ix, 7, ip("10.1.0.3"), m3, h3, true)
	wantVL3(t, ix, 7, ip("10.1.0.33"), m3, h3, true)
	wantVL3(t, ix, 7, ip("10.1.0.1"), m1, h2, true) // followed its MAC
	wantVL3(t, ix, 7, ip("fd00:7::1"), m1, h2, true)
	wantVL3(t, ix, 7, ip("10.1.0.2"), ether.MAC{}, store.Host{}, false)
	sameAsFresh(t, ix, f)

	// A VNIC re-read names a host the index has not heard of yet (its
	// ChangeHost is not applied): the index reads the hosts at once.
	h5 := store.Host{ID: "h5", IP: ip("198.18.0.5"), Port: 4789}
	f.silently(func(f *fakeFeed) { f.hosts["h5"] = h5 })
	f.moveVNIC(7, m3, "h5")
	update(t, ix)
	wantVL2(t, ix, 7, m3, h5, true)
}

func TestChangeLog(t *testing.T) {
	f := sample()
	ix := load(t, f)
	rep := report(ix)
	s1, s2 := ix.LogSignal(h1.IP), ix.LogSignal(h2.IP)
	if ix.LogSignal(ip("::ffff:198.18.0.1")) != s1 {
		t.Error("LogSignal of the IPv4-mapped address is not the host's")
	}
	unknown := ix.LogSignal(ip("198.18.0.99"))
	f.appendLog("h1")
	update(t, ix)
	if !closed(s1) || !rep.has(s1) {
		t.Errorf("h1's log signal after its log changed: closed %v, reported %v; want both", closed(s1), rep.has(s1))
	}
	if closed(s2) || closed(unknown) {
		t.Error("another host's log signal closed after h1's log changed")
	}
	n1 := ix.LogSignal(h1.IP)
	if closed(n1) {
		t.Error("h1's new log signal is closed")
	}
	f.appendLog("h2")
	f.appendLog("h2")
	update(t, ix)
	if closed(n1) || !closed(s2) || !rep.has(s2) {
		t.Error("after h2's log changed: h1's signal closed, or h2's not closed and reported")
	}
	// A new host: waiters on its address wake when it appears.
	f.putHost(store.Host{ID: "h9", IP: ip("198.18.0.99"), Port: 4789})
	update(t, ix)
	if !closed(unknown) || !rep.has(unknown) {
		t.Error("the signal of an unknown address not closed and reported when hosts changed")
	}
}

func TestReplayIdempotent(t *testing.T) {
	f := sample()
	ix := load(t, f)
	f.moveVNIC(7, m1, "h3")
	f.removeVNIC(7, m2)
	f.putHost(h2, ip("10.0.0.22"))
	f.addVNIC(7, m2, "h2", ip("10.1.0.22"))
	update(t, ix)
	var once bytes.Buffer
	ix.Dump(&once)
	// Everything again from the start, then the last few twice more.
	for _, from := range []int64{0, 3, f.seq - 2} {
		ix.mu.Lock()
		ix.seq = from
		ix.mu.Unlock()
		update(t, ix)
		var again bytes.Buffer
		ix.Dump(&again)
		if again.String() != once.String() {
			t.Errorf("replayed from %d:\n%s\nonce:\n%s", from, again.String(), once.String())
		}
	}
	sameAsFresh(t, ix, f)
}

// The store changes while Load reads it: the replay after fixes it.
func TestLoadWhileChanging(t *testing.T) {
	f := sample()
	f.onScan = func() {
		f.onScan = nil
		f.moveVNIC(7, m1, "h3")                // after the VL2 scan
		f.addVNIC(7, m3, "h3", ip("10.1.0.3")) // both
		f.removeVNIC(7, m2)
	}
	ix := load(t, f)
	update(t, ix)
	wantVL2(t, ix, 7, m1, h3, true)
	wantVL3(t, ix, 7, ip("10.1.0.3"), m3, h3, true)
	wantVL3(t, ix, 7, ip("10.1.0.2"), ether.MAC{}, store.Host{}, false)
	sameAsFresh(t, ix, f)
}

func TestReload(t *testing.T) {
	for _, how := range []string{"pruned", "ChangeReload"} {
		t.Run(how, func(t *testing.T) {
			f := sample()
			ix := load(t, f)
			rep := report(ix)
			sig := ix.LogSignal(h2.IP)
			f.silently(func(f *fakeFeed) {
				delete(f.vnics, vl2Key{7, m2})
				delete(f.ips, ipk{7, ip("10.1.0.2")})
				f.vnics[vl2Key{7, m3}] = "h3"
				f.hosts["h3"] = store.Host{ID: "h3", IP: ip("198.18.0.33"), Port: 1}
			})
			if how == "pruned" {
				f.appendLog("h1") // a change, then lost
				f.prune()
			} else {
				f.recordReload()
				f.appendLog("h1") // after the reload: applied by it
			}
			update(t, ix)
			wantVL2(t, ix, 7, m2, store.Host{}, false)
			wantVL2(t, ix, 7, m3, f.hosts["h3"], true)
			wantVL3(t, ix, 7, ip("10.1.0.2"), ether.MAC{}, store.Host{}, false)
			if !closed(sig) || !rep.has(sig) {
				t.Error("a log signal not closed and reported by a reload")
			}
			if s := ix.Status(); s.Reloads != 1 || s.Seq != f.seq {
				t.Errorf("Status = %+v, want 1 reload at seq %d", s, f.seq)
			}
			sameAsFresh(t, ix, f)
		})
	}
}

// logBuffer collects log lines for a test.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// eventually waits for cond, failing after a generous deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func follow(t *testing.T, ix *Index) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- ix.Follow(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Follow returned %v", err)
		}
	})
}

func TestFollowWatch(t *testing.T) {
	f := sample()
	ix := load(t, f)
	ix.tick = time.Hour // only Watch wakes it
	follow(t, ix)
	f.moveVNIC(7, m1, "h3")
	eventually(t, "the move", func() bool { h, _ := ix.VL2(7, m1); return h == h3 })
	sig := ix.LogSignal(h3.IP)
	f.appendLog("h3")
	<-sig
}

func TestFollowTick(t *testing.T) {
	f := sample()
	f.watch = make(chan struct{}) // never signalled
	ix := load(t, f)
	ix.tick = 5 * time.Millisecond
	follow(t, ix)
	f.moveVNIC(7, m1, "h3")
	eventually(t, "the move", func() bool { h, _ := ix.VL2(7, m1); return h == h3 })
}

func TestFollowErrors(t *testing.T) {
	f := sample()
	var logs logBuffer
	ix, err := Load(context.Background(), f, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ix.tick = time.Millisecond
	ix.minBackoff, ix.maxBackoff = time.Millisecond, 4*time.Millisecond
	f.setFail(errDown)
	follow(t, ix)
	f.moveVNIC(7, m1, "h3")
	eventually(t, "several failures", func() bool { return ix.Status().Failures >= 5 })
	s := ix.Status()
	if !errors.Is(s.Err, errDown) || s.Since.IsZero() || s.Seq != 9 {
		t.Errorf("Status while the store is down = %+v", s)
	}
	wantVL2(t, ix, 7, m1, h1, true) // the last state read
	f.setFail(nil)
	eventually(t, "recovery", func() bool { h, _ := ix.VL2(7, m1); return h == h3 })
	eventually(t, "the status", func() bool { return ix.Status().Err == nil })
	if s := ix.Status(); !s.Since.IsZero() || s.Seq != f.seq {
		t.Errorf("Status after recovery = %+v", s)
	}
	out := logs.String()
	if n := strings.Count(out, "level=ERROR"); n != 1 || !strings.Contains(out, "connection refused") {
		t.Errorf("want the outage logged once as an error:\n%s", out)
	}
	if n := strings.Count(out, "read again"); n != 1 {
		t.Errorf("want the recovery logged once:\n%s", out)
	}
	// A second outage is logged again, once.
	f.setFail(errDown)
	eventually(t, "the second outage", func() bool { return ix.Status().Err != nil })
	f.setFail(nil)
	eventually(t, "the second recovery", func() bool { return ix.Status().Err == nil })
	if n := strings.Count(logs.String(), "level=ERROR"); n != 2 {
		t.Errorf("two outages logged %d times:\n%s", n, logs.String())
	}
}

func TestUpdateErrorKeepsSeq(t *testing.T) {
	f := sample()
	ix := load(t, f)
	f.moveVNIC(7, m1, "h3")
	f.setFail(errDown)
	if err := ix.Update(context.Background()); !errors.Is(err, errDown) {
		t.Fatalf("Update = %v, want %v", err, errDown)
	}
	if ix.Seq() != 9 {
		t.Errorf("seq %d after a failed update, want 9", ix.Seq())
	}
	f.setFail(nil)
	update(t, ix)
	wantVL2(t, ix, 7, m1, h3, true)
	if _, err := Load(context.Background(), errFeed{f}, nil); !errors.Is(err, errDown) {
		t.Errorf("Load from a failing store = %v", err)
	}
}

// errFeed fails its scans.
type errFeed struct{ *fakeFeed }

func (errFeed) ScanVL3(ctx context.Context, fn func(uint32, netip.Addr, ether.MAC) error) error {
	return errDown
}

// Lookups from many goroutines while changes are applied (run with -race).
func TestConcurrent(t *testing.T) {
	f := sample()
	ix := load(t, f)
	ix.tick = time.Millisecond
	follow(t, ix)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				ix.VL2(7, m1)
				ix.VL3(7, ip("10.1.0.1"))
				ix.HostsFrom(admin)
				ix.LogSignal(h1.IP)
				ix.Batch(func(r Reader) { r.VL2(7, m2); r.VL3(7, ip("fd00:7::1")) })
				ix.Status()
			}
		})
	}
	for i := range 200 {
		host := []string{"h1", "h2", "h3"}[i%3]
		f.moveVNIC(7, m1, host)
		f.appendLog(host)
		if i%50 == 0 {
			f.putHost(h2, ip("10.0.0."+string(rune('1'+i/50))))
		}
	}
	eventually(t, "the last change", func() bool { return ix.Seq() == f.seq })
	close(stop)
	wg.Wait()
	sameAsFresh(t, ix, f)
}

func TestLookupsDoNotAllocate(t *testing.T) {
	ix := load(t, sample())
	a4, a6 := ip("10.1.0.1"), ip("fd00:7::1")
	if n := testing.AllocsPerRun(100, func() {
		ix.VL2(7, m1)
		ix.VL2(7, m3)
		ix.VL3(7, a4)
		ix.VL3(7, a6)
		ix.LogSignal(h1.IP)
	}); n != 0 {
		t.Errorf("%v allocations a lookup", n)
	}
}

func TestDumpRoundTrip(t *testing.T) {
	f := sample()
	odd := store.Host{ID: "odd host \"x\"", IP: ip("198.18.0.7"), Port: 1}
	f.putHost(odd)
	f.addVNIC(1, m3, odd.ID)
	ix := load(t, f)
	var b bytes.Buffer
	if err := ix.Dump(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `vl2 1 2:8:20:0:0:3 "odd host \"x\""`) {
		t.Errorf("a host ID with spaces and quotes not quoted:\n%s", b.String())
	}
	d, err := ReadDump(strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if diffs := Diff(d, ix); len(diffs) > 0 || d.Seq() != ix.Seq() {
		t.Errorf("read back: seq %d, differences %q", d.Seq(), diffs)
	}
	wantVL2(t, d, 1, m3, odd, true)
	if err := d.Update(context.Background()); err == nil {
		t.Error("a dump updated")
	}
	for _, bad := range []string{
		"",
		"host h1 198.18.0.1 4789 -\n",
		"seq 1\nseq 2\n",
		"seq 1\nvl2 7 2:8:20:0:0:1 h1\n",
		"seq 1\nhost h1 198.18.0.1 70000 -\n",
		"seq 1\nvl3 7 10.0.0.1\n",
		"seq 1\nvl3 7 10.0.0.1 zz\n",
		"seq 1\nbogus\n",
	} {
		if _, err := ReadDump(strings.NewReader(bad)); err == nil {
			t.Errorf("ReadDump(%q) succeeded", bad)
		}
	}
}

func TestDiff(t *testing.T) {
	f := sample()
	ix := load(t, f)
	f.silently(func(f *fakeFeed) {
		f.vnics[vl2Key{7, m1}] = "h2"                   // different
		delete(f.vnics, vl2Key{8, m1})                  // extra in the index
		f.vnics[vl2Key{9, m3}] = "h3"                   // missing
		f.ips[ipk{7, ip("10.1.0.2")}] = m1              // different
		f.ips[ipk{7, ip("fd00:7::9")}] = m2             // missing
		f.hosts["h3"] = store.Host{ID: "h3", IP: h3.IP} // port differs
		f.sources["h3"] = []netip.Addr{admin}           // and sources
		f.hosts["h0"] = store.Host{ID: "h0", IP: ip("198.18.0.100"), Port: 1}
	})
	got := Diff(ix, load(t, f))
	want := []string{
		"host h0: missing from the index (store: 198.18.0.100 1 -)",
		"host h3: index 198.18.0.3 4789 -, store 198.18.0.3 0 10.0.0.9",
		"vl2 7 2:8:20:0:0:1: index h1, store h2",
		"vl2 8 2:8:20:0:0:1: not in the store (index: h3)",
		"vl2 9 2:8:20:0:0:3: missing from the index (store: h3)",
		"vl3 7 10.1.0.2: index 2:8:20:0:0:2, store 2:8:20:0:0:1",
		"vl3 7 fd00:7::9: missing from the index (store: 2:8:20:0:0:2)",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Diff:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestCheck(t *testing.T) {
	ctx := context.Background()
	f := sample()
	ix := load(t, f)
	f.moveVNIC(7, m1, "h3") // applied by Check
	if d, err := Check(ctx, ix, f); err != nil || len(d) != 0 {
		t.Errorf("Check = %q, %v", d, err)
	}
	wantVL2(t, ix, 7, m1, h3, true)
	// A change the feed did not record is found.
	f.silently(func(f *fakeFeed) { f.vnics[vl2Key{7, m2}] = "h1" })
	if d, err := Check(ctx, ix, f); err != nil || !slices.Equal(d, []string{"vl2 7 2:8:20:0:0:2: index h2, store h1"}) {
		t.Errorf("Check = %q, %v", d, err)
	}

	// A dump from an older sequence number: what changed since is not a
	// difference; what the feed missed is.
	f = sample()
	var b bytes.Buffer
	load(t, f).Dump(&b)
	dump, err := ReadDump(&b)
	if err != nil {
		t.Fatal(err)
	}
	f.moveVNIC(7, m1, "h3")
	f.addVNIC(7, m3, "h3", ip("10.1.0.3"))
	f.putHost(h2)
	if d, err := Check(ctx, dump, f); err != nil || len(d) != 0 {
		t.Errorf("Check(dump) = %q, %v", d, err)
	}
	f.silently(func(f *fakeFeed) { delete(f.vnics, vl2Key{8, m1}) })
	if d, err := Check(ctx, dump, f); err != nil || !slices.Equal(d, []string{"vl2 8 2:8:20:0:0:1: not in the store (index: h3)"}) {
		t.Errorf("Check(dump) = %q, %v", d, err)
	}
	// Pruned changes: nothing can be left out.
	f.prune()
	if d, err := Check(ctx, dump, f); err != nil || len(d) != 5 {
		t.Errorf("Check(dump) after pruning = %q, %v", d, err)
	}
}
