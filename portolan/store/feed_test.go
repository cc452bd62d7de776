package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"overlaynet/ether"
)

func fmtChange(c Change) string {
	switch c.Kind {
	case ChangeHost:
		return "host " + c.Host
	case ChangeLog:
		return "log " + c.Host
	case ChangeVNIC:
		return fmt.Sprintf("vnic %d %s", c.VNetID, ether.Short(c.MAC))
	case ChangeIP:
		return fmt.Sprintf("ip %d %s", c.VNetID, c.IP)
	case ChangeReload:
		return "reload"
	}
	return fmt.Sprintf("kind %d", c.Kind)
}

// feedReader reads the changes after the last it saw.
type feedReader struct {
	t   *testing.T
	s   *SQL
	seq int64
}

// next returns the changes since the last call, each transaction's in
// no particular order: sorted, joined by ", ". It checks that sequence
// numbers rise and that ChangeSeq is the last of them.
func (f *feedReader) next() string {
	f.t.Helper()
	cs, err := f.s.Changes(ctx, f.seq, 1000)
	must(f.t, err)
	var out []string
	for _, c := range cs {
		if c.Seq <= f.seq {
			f.t.Fatalf("change %+v after seq %d", c, f.seq)
		}
		f.seq = c.Seq
		out = append(out, fmtChange(c))
	}
	if seq, err := f.s.ChangeSeq(ctx); err != nil || seq != f.seq {
		f.t.Fatalf("ChangeSeq %d %v, want %d", seq, err, f.seq)
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

// TestChangeKinds: every mutation records what it changed, in its own
// transaction; failed ones record nothing.
func TestChangeKinds(t *testing.T) {
	eachStore(t, func(t *testing.T, s *SQL) {
		f := &feedReader{t: t, s: s}
		step := func(what string, err error, want string) {
			t.Helper()
			must(t, err)
			if got := f.next(); got != want {
				t.Errorf("%s: changes %q, want %q", what, got, want)
			}
		}
		fails := func(what string, err error) {
			t.Helper()
			if err == nil {
				t.Errorf("%s succeeded", what)
			}
			if got := f.next(); got != "" {
				t.Errorf("failed %s: changes %q", what, got)
			}
		}
		m1, m2 := ether.Short(mac1), ether.Short(mac2)
		if got := f.next(); got != "" || f.seq != 0 {
			t.Fatalf("a new store: %q, seq %d", got, f.seq)
		}
		step("PutHost a", s.PutHost(ctx, hostA), "host a")
		step("PutHost b", s.PutHost(ctx, hostB), "host b")
		step("SetHost a", s.SetHost(ctx, hostA, []netip.Addr{ip1}), "host a")
		step("AddVNIC mac1", s.AddVNIC(ctx, VNIC{VNetID: 42, MAC: mac1, Host: "a", IPs: []netip.Addr{ip1, ip6}}),
			"ip 42 10.0.0.1, ip 42 fd00::1, log a, vnic 42 "+m1)
		step("AddVNIC mac2", s.AddVNIC(ctx, VNIC{VNetID: 42, MAC: mac2, Host: "b"}),
			"log a, log b, vnic 42 "+m2)
		step("MoveVNIC mac1", s.MoveVNIC(ctx, 42, mac1, "b"), "log a, log b, vnic 42 "+m1)
		hostB2 := hostB
		hostB2.IP = netip.MustParseAddr("198.18.0.22")
		step("PutHost b's new address", s.PutHost(ctx, hostB2), "host b, log b")
		step("RemoveVNIC mac1", s.RemoveVNIC(ctx, 42, mac1), "ip 42 10.0.0.1, ip 42 fd00::1, log b, vnic 42 "+m1)
		fails("AddVNIC on a missing host", s.AddVNIC(ctx, VNIC{VNetID: 42, MAC: mac1, Host: "x"}))
		fails("AddVNIC of a taken address", s.AddVNIC(ctx, VNIC{VNetID: 42, MAC: mac1, Host: "a", IPs: []netip.Addr{ip1, ip1}}))
		fails("RemoveHost b", s.RemoveHost(ctx, "b"))
		fails("MoveVNIC of a missing VNIC", s.MoveVNIC(ctx, 42, mac1, "a"))
		fails("RemoveVNIC of a missing VNIC", s.RemoveVNIC(ctx, 42, mac1))
		drain(t, s, hostB2.IP) // RemoveLog: nothing for the feed
		step("RemoveLog", nil, "")
		step("RemoveHost a", s.RemoveHost(ctx, "a"), "host a")
		m3 := ether.MAC{2, 8, 0x20, 0, 0, 3}
		step("AddVNICs", s.AddVNICs(ctx, []VNIC{
			{VNetID: 7, MAC: mac1, Host: "b", IPs: []netip.Addr{ip1}},
			{VNetID: 7, MAC: m3, Host: "b"},
		}), "ip 7 10.0.0.1, log b, vnic 7 "+m1+", vnic 7 "+ether.Short(m3))
		step("Import", s.Import(ctx, []VNIC{{VNetID: 9, MAC: mac1, Host: "b", IPs: []netip.Addr{ip1}}, {VNetID: 9, MAC: mac2, Host: "b"}}), "reload")
		step("Import of nothing", s.Import(ctx, nil), "")
	})
}

// TestChangesPaging: Changes returns changes oldest first, at most limit
// at a time, none after the latest.
func TestChangesPaging(t *testing.T) {
	eachStore(t, func(t *testing.T, s *SQL) {
		var want []string
		for i := range 10 {
			id := fmt.Sprintf("h%d", i)
			must(t, s.PutHost(ctx, Host{ID: id, IP: netip.AddrFrom4([4]byte{198, 18, 1, byte(i)}), Port: 4789}))
			want = append(want, "host "+id)
		}
		var got []string
		var after int64
		for {
			cs, err := s.Changes(ctx, after, 3)
			must(t, err)
			if len(cs) > 3 {
				t.Fatalf("%d changes, limit 3", len(cs))
			}
			if len(cs) == 0 {
				break
			}
			for _, c := range cs {
				if c.Seq <= after {
					t.Fatalf("seq %d after %d", c.Seq, after)
				}
				after = c.Seq
				got = append(got, fmtChange(c))
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("changes %q, want %q", got, want)
		}
		if seq, _ := s.ChangeSeq(ctx); seq != after {
			t.Errorf("ChangeSeq %d, last change %d", seq, after)
		}
		if cs, err := s.Changes(ctx, after+100, 3); err != nil || len(cs) != 0 {
			t.Errorf("changes after the latest: %v %v", cs, err)
		}
		if cs, err := s.Changes(ctx, 0, 0); err != nil || len(cs) != 0 {
			t.Errorf("limit 0: %v %v", cs, err)
		}
	})
}

// shrinkFeed keeps few changes for the rest of the test.
func shrinkFeed(t *testing.T, keep, batch int64) {
	k, b := keepChanges, pruneBatch
	keepChanges, pruneBatch = keep, batch
	t.Cleanup(func() { keepChanges, pruneBatch = k, b })
}

// TestChangesPruned: old changes go in batches; asking for changes from
// before what is kept is ErrChangesPruned, from after it is not.
func TestChangesPruned(t *testing.T) {
	shrinkFeed(t, 5, 3)
	eachStore(t, func(t *testing.T, s *SQL) {
		for i := range 20 {
			must(t, s.PutHost(ctx, Host{ID: "a", IP: hostA.IP, Port: uint16(1000 + i)}))
		}
		var pruned, kept int64
		must(t, s.db.QueryRow(`SELECT pruned_through FROM changes_meta`).Scan(&pruned))
		must(t, s.db.QueryRow(`SELECT count(*) FROM changes`).Scan(&kept))
		// 20 changes: pruned at 8 (through 3), 11, 14, 17 and 20 (through 15).
		if pruned != 15 || kept != 5 {
			t.Errorf("pruned through %d, %d kept; want 15 and 5", pruned, kept)
		}
		for _, after := range []int64{0, 1, 14} {
			if _, err := s.Changes(ctx, after, 100); !errors.Is(err, ErrChangesPruned) {
				t.Errorf("changes after %d: %v, want ErrChangesPruned", after, err)
			}
		}
		cs, err := s.Changes(ctx, 15, 100)
		must(t, err)
		if len(cs) != 5 || cs[0].Seq != 16 || cs[4].Seq != 20 {
			t.Errorf("changes after 15: %+v", cs)
		}
		if seq, _ := s.ChangeSeq(ctx); seq != 20 {
			t.Errorf("ChangeSeq %d", seq)
		}
		must(t, s.PutHost(ctx, hostB))
		if _, err := s.Changes(ctx, 15, 100); err != nil {
			t.Errorf("changes after 15 once more is kept: %v", err)
		}
	})
}

// TestScan: the scans see every mapping, stream them (a scan of many
// rows holds no more memory than a few), and stop at fn's error.
func TestScan(t *testing.T) {
	const n = 100_000
	eachStore(t, func(t *testing.T, s *SQL) {
		must(t, s.PutHost(ctx, hostA))
		must(t, s.PutHost(ctx, hostB))
		vs := make([]VNIC, n)
		for i := range vs {
			vs[i] = VNIC{VNetID: uint32(1 + i%3), MAC: ether.MAC{2, 0, 0, byte(i >> 16), byte(i >> 8), byte(i)}, Host: "a"}
			if i%2 == 1 {
				vs[i].Host = "b"
				vs[i].IPs = []netip.Addr{netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})}
			}
		}
		must(t, s.Import(ctx, vs))
		vs = nil

		// Live heap, measured now and then during the scan.
		var before, peak runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		measure := func() {
			var m runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&m)
			if m.HeapAlloc > peak.HeapAlloc {
				peak = m
			}
		}
		var got, onB int
		err := s.ScanVL2(ctx, func(vnetid uint32, mac ether.MAC, host string) error {
			i := int(mac[3])<<16 | int(mac[4])<<8 | int(mac[5])
			if vnetid != uint32(1+i%3) || host != map[bool]string{false: "a", true: "b"}[i%2 == 1] {
				return fmt.Errorf("row %d: %d %s %s", i, vnetid, ether.Short(mac), host)
			}
			if host == "b" {
				onB++
			}
			if got++; got%(n/4) == 0 {
				measure()
			}
			return nil
		})
		must(t, err)
		if got != n || onB != n/2 {
			t.Errorf("ScanVL2: %d rows, %d on b; want %d and %d", got, onB, n, n/2)
		}
		if grew := int64(peak.HeapAlloc) - int64(before.HeapAlloc); grew > 2<<20 {
			t.Errorf("the live heap grew by %d bytes during a scan of %d rows", grew, n)
		}
		got = 0
		err = s.ScanVL3(ctx, func(vnetid uint32, ip netip.Addr, mac ether.MAC) error {
			i := int(mac[3])<<16 | int(mac[4])<<8 | int(mac[5])
			if want := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}); ip != want || vnetid != uint32(1+i%3) {
				return fmt.Errorf("row %d: %d %s %s", i, vnetid, ip, ether.Short(mac))
			}
			got++
			return nil
		})
		must(t, err)
		if got != n/2 {
			t.Errorf("ScanVL3: %d rows, want %d", got, n/2)
		}

		stop := errors.New("stop")
		got = 0
		err = s.ScanVL2(ctx, func(uint32, ether.MAC, string) error {
			if got++; got == 10 {
				return stop
			}
			return nil
		})
		if err != stop || got != 10 {
			t.Errorf("ScanVL2 stopped: %v after %d rows", err, got)
		}
		got = 0
		err = s.ScanVL3(ctx, func(uint32, netip.Addr, ether.MAC) error { got++; return stop })
		if err != stop || got != 1 {
			t.Errorf("ScanVL3 stopped: %v after %d rows", err, got)
		}
	})
}

// TestChangesInOrder: a follower reading while writers commit at once
// never skips a change (one that drew an earlier sequence number but
// committed later than one it has read).
func TestChangesInOrder(t *testing.T) {
	eachStore(t, func(t *testing.T, s *SQL) {
		const writers, each = 4, 40
		for w := range writers {
			must(t, s.PutHost(ctx, Host{ID: fmt.Sprint(w), IP: netip.AddrFrom4([4]byte{198, 18, 2, byte(w)}), Port: 1}))
		}
		start, _ := s.ChangeSeq(ctx)
		errs := make(chan error, writers)
		for w := range writers {
			go func() {
				var err error
				for i := 0; i < each && err == nil; i++ {
					err = s.PutHost(ctx, Host{ID: fmt.Sprint(w), IP: netip.AddrFrom4([4]byte{198, 18, 2, byte(w)}), Port: uint16(2 + i)})
				}
				errs <- err
			}()
		}
		seen := map[int64]bool{}
		after := start
		read := func() {
			cs, err := s.Changes(ctx, after, 1000)
			must(t, err)
			for _, c := range cs {
				seen[c.Seq] = true
				after = c.Seq
			}
		}
		for running := writers; running > 0; {
			select {
			case err := <-errs:
				must(t, err)
				running--
			default:
				read()
			}
		}
		read()
		rows, err := s.db.Query(s.q(`SELECT seq FROM changes WHERE seq > ? ORDER BY seq`), start)
		must(t, err)
		defer rows.Close()
		var missed []int64
		n := 0
		for rows.Next() {
			var seq int64
			must(t, rows.Scan(&seq))
			n++
			if !seen[seq] {
				missed = append(missed, seq)
			}
		}
		must(t, rows.Err())
		if n != writers*each || len(missed) > 0 {
			t.Errorf("%d changes (want %d); the follower missed %v", n, writers*each, missed)
		}
	})
}

// setWatch changes a watch tunable for the rest of the test.
func setWatch[T any](t *testing.T, v *T, to T) {
	old := *v
	*v = to
	t.Cleanup(func() { *v = old })
}

// waitSignal waits for a signal, failing after a generous time.
func waitSignal(t testing.TB, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case _, ok := <-ch:
		if !ok {
			t.Fatalf("%s: the watch channel closed", what)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no signal", what)
	}
}

// waitSeq waits for signals until s has changes through seq (a signal
// may come before the commit it announces is visible, and a signal may
// be spurious) and returns when the last one came.
func waitSeq(t testing.TB, s *SQL, ch <-chan struct{}, seq int64, what string) time.Time {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				t.Fatalf("%s: the watch channel closed", what)
			}
			at := time.Now()
			got, err := s.ChangeSeq(ctx)
			must(t, err)
			if got >= seq {
				return at
			}
		case <-deadline:
			got, _ := s.ChangeSeq(ctx)
			t.Fatalf("%s: no signal for seq %d (at %d)", what, seq, got)
		}
	}
}

// childEnv names the SQLite file a child process (the test binary run
// again, see TestMain) writes to.
const childEnv = "PORTOLAN_STORE_TEST_WRITE"

// childWrite is the child: it adds host b and prints when that
// committed, in Unix nanoseconds. With childLoop set it changes host b's
// port for every line it reads, printing the same.
func childWrite(path string) int {
	s, err := Open(context.Background(), "sqlite:"+path)
	if err == nil {
		err = s.PutHost(context.Background(), hostB)
		fmt.Println(time.Now().UnixNano())
		if os.Getenv(childLoop) != "" {
			in := bufio.NewScanner(os.Stdin)
			for i := 0; err == nil && in.Scan(); i++ {
				err = s.PutHost(context.Background(), Host{ID: "b", IP: hostB.IP, Port: uint16(1000 + i%2)})
				fmt.Println(time.Now().UnixNano())
			}
		}
		s.Close()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

const childLoop = "PORTOLAN_STORE_TEST_LOOP"

// TestWatchSQLiteFile: a commit through another connection to the file,
// and by another process, is signalled through file events (the
// data_version poll is off).
func TestWatchSQLiteFile(t *testing.T) {
	setWatch(t, &sqlitePoll, time.Hour)
	path := filepath.Join(t.TempDir(), "portolan.db")
	s1, err := Open(ctx, "sqlite:"+path)
	must(t, err)
	defer s1.Close()
	ch := s1.Watch(ctx)
	waitSignal(t, ch, "watch established")

	s2, err := Open(ctx, "sqlite:"+path)
	must(t, err)
	must(t, s2.PutHost(ctx, hostA))
	done := time.Now()
	at := waitSeq(t, s1, ch, 1, "a commit by another *SQL")
	t.Logf("another connection: signalled %v after its commit returned", at.Sub(done))
	s2.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+path)
	cmd.Stderr = os.Stderr
	var out strings.Builder
	cmd.Stdout = &out
	must(t, cmd.Start())
	at = waitSeq(t, s1, ch, 2, "a commit by another process")
	must(t, cmd.Wait())
	ns, err := strconv.ParseInt(strings.TrimSpace(out.String()), 10, 64)
	must(t, err)
	t.Logf("another process: signalled %v after its commit returned", at.Sub(time.Unix(0, ns)))
	if err := s1.WatchErr(); err != nil {
		t.Errorf("WatchErr: %v", err)
	}
}

// TestWatchSQLitePoll: without file events, data_version still sees
// another connection's commit.
func TestWatchSQLitePoll(t *testing.T) {
	setWatch(t, &sqliteEvents, false)
	setWatch(t, &sqlitePoll, 20*time.Millisecond)
	path := filepath.Join(t.TempDir(), "portolan.db")
	s1, err := Open(ctx, "sqlite:"+path)
	must(t, err)
	defer s1.Close()
	s2, err := Open(ctx, "sqlite:"+path)
	must(t, err)
	defer s2.Close()
	ch := s1.Watch(ctx)
	waitSignal(t, ch, "watch established")
	for i := range 3 {
		must(t, s2.PutHost(ctx, Host{ID: "a", IP: hostA.IP, Port: uint16(1000 + i)}))
		waitSeq(t, s1, ch, int64(i+1), "a commit by another *SQL")
	}
}

// TestWatchLocal: a write through the same *SQL signals its watches at
// once, with neither file events nor the poll.
func TestWatchLocal(t *testing.T) {
	setWatch(t, &sqliteEvents, false)
	setWatch(t, &sqlitePoll, time.Hour)
	s, err := Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "portolan.db"))
	must(t, err)
	defer s.Close()
	ch1, ch2 := s.Watch(ctx), s.Watch(ctx)
	waitSignal(t, ch1, "watch 1 established")
	waitSignal(t, ch2, "watch 2 established")
	must(t, s.PutHost(ctx, hostA))
	// Signalled before PutHost returned.
	for i, ch := range []<-chan struct{}{ch1, ch2} {
		select {
		case <-ch:
		default:
			t.Errorf("watch %d: no signal after a write", i+1)
		}
	}
	// RemoveLog records no change and signals nothing.
	must(t, s.RemoveLog(ctx, [][16]byte{{1}}))
	select {
	case <-ch1:
		t.Error("a signal after RemoveLog")
	default:
	}
}

// TestWatchClose: a watch's channel closes when its context ends or the
// store closes; Watch on a closed store returns a closed channel.
func TestWatchClose(t *testing.T) {
	eachStore(t, func(t *testing.T, s *SQL) {
		closed := func(ch <-chan struct{}, what string) {
			t.Helper()
			timeout := time.After(10 * time.Second)
			for {
				select {
				case _, ok := <-ch:
					if !ok {
						return
					}
				case <-timeout:
					t.Fatalf("%s: the channel is still open", what)
				}
			}
		}
		wctx, cancel := context.WithCancel(ctx)
		ch1 := s.Watch(wctx)
		ch2 := s.Watch(ctx)
		waitSignal(t, ch1, "watch 1 established")
		cancel()
		closed(ch1, "after cancel")
		waitSignal(t, ch2, "watch 2 established")
		s.Close()
		closed(ch2, "after Close")
		closed(s.Watch(ctx), "Watch after Close")
	})
}

// pgStore opens a fresh PostgreSQL database, and returns its URL.
func pgStore(t testing.TB) (*SQL, string) {
	needPG(t)
	admin, err := Open(ctx, pg.DSN)
	must(t, err)
	dbSeq++
	name := fmt.Sprintf("w%d_%d", os.Getpid(), dbSeq)
	_, err = admin.db.Exec("CREATE DATABASE " + name)
	admin.Close()
	must(t, err)
	dsn := replaceDB(pg.DSN, name)
	s, err := Open(ctx, dsn)
	must(t, err)
	t.Cleanup(func() { s.Close() })
	return s, dsn
}

// listener returns the backend pid of the LISTEN connection on the
// database of s, once there is one other than not.
func listener(t *testing.T, s *SQL, not int) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var pid int
		err := s.db.QueryRow(`SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%' AND pid <> $1`, not).Scan(&pid)
		if err == nil {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("no listener: %v", err)
		}
		time.Sleep(10 * time.Millisecond) // polling pg_stat_activity: no way to wait on it
	}
}

// TestWatchPG: a change through another *SQL is signalled through
// LISTEN, and still after the listening backend is killed.
func TestWatchPG(t *testing.T) {
	s1, dsn := pgStore(t)
	s2, err := Open(ctx, dsn)
	must(t, err)
	defer s2.Close()
	ch := s1.Watch(ctx)
	waitSignal(t, ch, "watch established")
	pid := listener(t, s2, 0)

	must(t, s2.PutHost(ctx, hostA))
	done := time.Now()
	at := waitSeq(t, s1, ch, 1, "a commit by another *SQL")
	t.Logf("signalled %v after the commit returned", at.Sub(done))

	if _, err := s2.db.Exec(`SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	waitSignal(t, ch, "reconnected")
	listener(t, s2, pid)
	if s1.WatchErr() == nil {
		t.Error("WatchErr is nil after the listener was killed")
	}
	for len(ch) > 0 {
		<-ch
	}
	must(t, s2.PutHost(ctx, hostB))
	waitSeq(t, s1, ch, 2, "a commit after the reconnection")
}

// TestWatchPGIdle: an idle LISTEN connection is pinged and kept.
func TestWatchPGIdle(t *testing.T) {
	setWatch(t, &pgPing, 20*time.Millisecond)
	s1, dsn := pgStore(t)
	s2, err := Open(ctx, dsn)
	must(t, err)
	defer s2.Close()
	ch := s1.Watch(ctx)
	waitSignal(t, ch, "watch established")
	pid := listener(t, s2, 0)
	// Wait until the listener has LISTENed again (its idle check) a few
	// times.
	var last time.Time
	deadline := time.Now().Add(10 * time.Second)
	for pings := -1; pings < 3; {
		var start time.Time
		if err := s2.db.QueryRow(`SELECT query_start FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&start); err != nil {
			t.Fatalf("the listener (backend %d) while idle: %v; WatchErr %v", pid, err, s1.WatchErr())
		}
		if !start.Equal(last) {
			last = start
			pings++
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d idle checks in 10 s", pings)
		}
		time.Sleep(5 * time.Millisecond) // polling pg_stat_activity
	}
	select {
	case <-ch:
		t.Error("a signal while idle")
	default:
	}
	if got := listener(t, s2, 0); got != pid {
		t.Errorf("the listener changed from %d to %d while idle", pid, got)
	}
	if err := s1.WatchErr(); err != nil {
		t.Errorf("WatchErr: %v", err)
	}
	must(t, s2.PutHost(ctx, hostA))
	waitSeq(t, s1, ch, 1, "a commit after idling")
}

// report reports latency percentiles.
func report(b *testing.B, ds []time.Duration) {
	slices.Sort(ds)
	us := func(q float64) float64 { return float64(ds[int(q*float64(len(ds)-1))].Nanoseconds()) / 1e3 }
	b.ReportMetric(us(0.5), "µs-p50")
	b.ReportMetric(us(0.99), "µs-p99")
	b.ReportMetric(us(1), "µs-max")
}

// BenchmarkWatchLatency: from a commit by another *SQL (returned) to the
// signal after which the watching store sees it (0 when it came first).
func BenchmarkWatchLatency(b *testing.B) {
	run := func(b *testing.B, s1, s2 *SQL) {
		ch := s1.Watch(ctx)
		waitSignal(b, ch, "watch established")
		seq, _ := s1.ChangeSeq(ctx)
		ds := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for i := range b.N {
			for len(ch) > 0 {
				<-ch
			}
			if err := s2.PutHost(ctx, Host{ID: "a", IP: hostA.IP, Port: uint16(1000 + i%2)}); err != nil {
				b.Fatal(err)
			}
			done := time.Now()
			seq++
			at := waitSeq(b, s1, ch, seq, "bench")
			ds = append(ds, max(at.Sub(done), 0))
		}
		report(b, ds)
	}
	b.Run("sqlite", func(b *testing.B) {
		path := filepath.Join(b.TempDir(), "portolan.db")
		s1, err := Open(ctx, "sqlite:"+path)
		if err != nil {
			b.Fatal(err)
		}
		defer s1.Close()
		s2, err := Open(ctx, "sqlite:"+path)
		if err != nil {
			b.Fatal(err)
		}
		defer s2.Close()
		run(b, s1, s2)
	})
	// Another process commits: the child of TestMain, one commit a line.
	b.Run("sqlite-process", func(b *testing.B) {
		path := filepath.Join(b.TempDir(), "portolan.db")
		s1, err := Open(ctx, "sqlite:"+path)
		if err != nil {
			b.Fatal(err)
		}
		defer s1.Close()
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+path, childLoop+"=1")
		cmd.Stderr = os.Stderr
		in, _ := cmd.StdinPipe()
		outp, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		out := bufio.NewScanner(outp)
		committed := func() time.Time {
			if !out.Scan() {
				b.Fatal("the child stopped")
			}
			ns, err := strconv.ParseInt(out.Text(), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return time.Unix(0, ns)
		}
		committed() // host b added
		ch := s1.Watch(ctx)
		waitSignal(b, ch, "watch established")
		seq, _ := s1.ChangeSeq(ctx)
		ds := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for range b.N {
			for len(ch) > 0 {
				<-ch
			}
			fmt.Fprintln(in, "put")
			seq++
			at := waitSeq(b, s1, ch, seq, "bench")
			ds = append(ds, max(at.Sub(committed()), 0))
		}
		b.StopTimer()
		in.Close()
		if err := cmd.Wait(); err != nil {
			b.Fatal(err)
		}
		report(b, ds)
	})
	b.Run("postgres", func(b *testing.B) {
		s1, dsn := pgStore(b)
		s2, err := Open(ctx, dsn)
		if err != nil {
			b.Fatal(err)
		}
		defer s2.Close()
		run(b, s1, s2)
	})
}
