package cli

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"overlaynet/ether"
	"overlaynet/pgtemp"
	"overlaynet/portolan/store"
	"overlaynet/svpwire"
)

// childEnv makes the test binary run portolan with its arguments instead
// of the tests: a change "made by another process" is made by one.
const childEnv = "PORTOLAN_CLI_TEST_CHILD"

// pg is the PostgreSQL the tests share (nil without one); noPG says why.
var (
	pg   *pgtemp.Server
	noPG error
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	if noPG = pgtemp.Available(); noPG == nil {
		var err error
		if pg, err = pgtemp.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "portolan cli tests need PostgreSQL:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	if pg != nil {
		pg.Stop()
	}
	os.Exit(code)
}

// pgDSN returns the DSN of a fresh PostgreSQL database, skipping the test
// visibly where there is no PostgreSQL.
func pgDSN(t *testing.T) string {
	dsn, _ := pgDatabase(t)
	return dsn
}

// pgDatabase returns the DSN and name of a fresh PostgreSQL database.
func pgDatabase(t *testing.T) (dsn, name string) {
	t.Helper()
	if pg == nil {
		t.Skipf("PostgreSQL unavailable: %v", noPG)
	}
	db := pgDB(t, pg.DSN)
	name = fmt.Sprintf("cli%d_%d", os.Getpid(), time.Now().UnixNano())
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatal(err)
	}
	dsn = strings.Replace(pg.DSN, "@/postgres?", "@/"+name+"?", 1)
	if code, _, errs := run(t, "init", "--store", dsn); code != 0 {
		t.Fatalf("init: exit %d, %s", code, errs)
	}
	return dsn, name
}

// pgDB opens a database/sql handle on dsn, closed when the test ends.
func pgDB(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// child runs portolan in another process, as an operator would, and
// fails the test unless it succeeds. It returns when the process has
// exited: its change is committed.
func child(t *testing.T, dsn, sub string, args ...string) {
	t.Helper()
	c := exec.Command(os.Args[0], append([]string{sub, "--store", dsn}, args...)...)
	c.Env = append(os.Environ(), childEnv+"=1")
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("portolan %s %q in another process: %v\n%s", sub, args, err, out)
	}
}

// lockedBuffer is a bytes.Buffer that a server logs into while the test
// reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// served is a running 'portolan serve'.
type served struct {
	svp, admin, api string // addresses
	log             *lockedBuffer
}

var (
	servingRE = regexp.MustCompile(`msg="portolan serving SVP" listen=(\S+)`)
	adminRE   = regexp.MustCompile(`msg="admin endpoint" listen=(\S+)`)
	apiRE     = regexp.MustCompile(`msg="API endpoint" listen=(\S+)`)
)

// serve runs 'portolan serve' on dsn in-process, on loopback ports of its
// own, until the test ends; then it must stop cleanly.
func serve(t *testing.T, dsn string, extra ...string) *served {
	t.Helper()
	withAPI := slices.Contains(extra, "--api")
	ctx, cancel := context.WithCancel(context.Background())
	s := &served{log: new(lockedBuffer)}
	done := make(chan int, 1)
	go func() {
		done <- MainContext(ctx, append([]string{"serve", "--store", dsn, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
			"--log-level", "debug"}, extra...), io.Discard, s.log)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("serve exited %d:\n%s", code, s.log)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("serve did not stop within 10 s of its context ending:\n%s", s.log)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		out := s.log.String()
		m, a, p := servingRE.FindStringSubmatch(out), adminRE.FindStringSubmatch(out), apiRE.FindStringSubmatch(out)
		if m != nil && a != nil && (p != nil || !withAPI) {
			s.svp, s.admin = m[1], a[1]
			if p != nil {
				s.api = p[1]
			}
			return s
		}
		select {
		case code := <-done:
			done <- code
			t.Fatalf("serve exited %d before serving:\n%s", code, out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start within 30 s:\n%s", out)
		}
		time.Sleep(5 * time.Millisecond) // polling its log: it has no other signal
	}
}

// check runs 'portolan check' on the store and 'portolan check --dump'
// on this server's index: any difference fails the test.
func (s *served) check(t *testing.T, dsn string) {
	t.Helper()
	if code, out, errs := cmd(t, dsn, "check"); code != 0 {
		t.Errorf("check: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs := cmd(t, dsn, "check", "--dump", "http://"+s.admin+"/index")
	if code != 0 || !strings.HasPrefix(out, "index matches the store at seq ") {
		t.Errorf("check --dump of the server's index: exit %d\n%s%s", code, out, errs)
	}
}

// metric returns the value of a metric on the server's /metrics.
func (s *served) metric(t *testing.T, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + s.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	t.Fatalf("no %s in /metrics:\n%s", name, b)
	return ""
}

// vl2 asks the server where (vnetid, mac) is.
func (s *served) vl2(t *testing.T, vnetid uint32, mac ether.MAC) svpwire.VL2Ack {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.svp, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(svpwire.VL2Req{MAC: mac, VNetID: vnetid}.AppendFrame(nil, 1)); err != nil {
		t.Fatal(err)
	}
	f, err := svpwire.NewReader(c, 0).Next()
	if err != nil {
		t.Fatalf("VL2 reply: %v", err)
	}
	ack, err := svpwire.DecodeVL2Ack(f.Body)
	if err != nil || f.Op != svpwire.OpVL2Ack || f.ID != 1 {
		t.Fatalf("VL2 reply: %v id %d: %v", f.Op, f.ID, err)
	}
	return ack
}

// changeBound is what a test allows a server to take to answer a
// committed change. The target is 50 ms at p99 (overlaybench scale
// measures it); this allows for a loaded machine, yet stays under the
// 1 s catch-up tick, so that a server that only polls fails.
const changeBound = 600 * time.Millisecond

// answers waits until every server answers (vnetid, mac) with want as
// the host's underlay IP (an invalid want: not found), failing the test
// if one takes longer than changeBound from since.
func answers(t *testing.T, since time.Time, vnetid uint32, mac ether.MAC, want netip.Addr, servers ...*served) {
	t.Helper()
	for i, s := range servers {
		for {
			ack := s.vl2(t, vnetid, mac)
			got := ack.Status == svpwire.StatusOK && ack.Addr == want
			if !want.IsValid() {
				got = ack.Status == svpwire.StatusNotFound
			}
			if got {
				t.Logf("server %d answered %v/%v -> %v %v after the commit", i, vnetid, mac, want, time.Since(since).Round(time.Millisecond))
				break
			}
			if time.Since(since) > changeBound {
				t.Fatalf("server %d still answers %v/%v with %v %v, %v after the change was committed (want %v)",
					i, vnetid, mac, ack.Status, ack.Addr, time.Since(since).Round(time.Millisecond), want)
			}
			time.Sleep(time.Millisecond) // polling over SVP, as a host would
		}
	}
}

var (
	macA = ether.MAC{2, 8, 0x20, 0, 0, 0xa}
	// macS is macA as portolan spells it.
	macS = "2:8:20:0:0:a"
	ipH1 = netip.MustParseAddr("198.18.0.1")
	ipH2 = netip.MustParseAddr("198.18.0.2")
)

// TestServeFollowsAnotherProcess: 'portolan add-vnic' and 'move-vnic',
// run as other processes writing the SQLite file, are answered by a
// running server within the bound, and its index then matches the store.
func TestServeFollowsAnotherProcess(t *testing.T) {
	t.Parallel()
	dsn := newDSN(t)
	ok(t, dsn, "add-host", "h1", ipH1.String())
	ok(t, dsn, "add-host", "h2", ipH2.String())
	s := serve(t, dsn)
	answers(t, time.Now(), 7, macA, netip.Addr{}, s)

	child(t, dsn, "add-vnic", "--vnetid", "7", "--mac", macS, "--host", "h1", "--ip", "10.7.0.1")
	answers(t, time.Now(), 7, macA, ipH1, s)
	child(t, dsn, "move-vnic", "--vnetid", "7", "--mac", macS, "--host", "h2")
	answers(t, time.Now(), 7, macA, ipH2, s)
	child(t, dsn, "add-host", "h2", "198.18.0.22")
	answers(t, time.Now(), 7, macA, netip.MustParseAddr("198.18.0.22"), s)
	child(t, dsn, "remove-vnic", "--vnetid", "7", "--mac", macS)
	answers(t, time.Now(), 7, macA, netip.Addr{}, s)
	s.check(t, dsn)
}

// TestServeTwoServersOnPostgreSQL: two servers on one PostgreSQL store
// both answer a change made by another process within the bound, and a
// host's log entry is given by the server the host is on.
func TestServeTwoServersOnPostgreSQL(t *testing.T) {
	t.Parallel()
	dsn := pgDSN(t)
	ok(t, dsn, "add-host", "h1", ipH1.String())
	ok(t, dsn, "add-host", "h2", ipH2.String())
	a, b := serve(t, dsn), serve(t, dsn)

	child(t, dsn, "add-vnic", "--vnetid", "7", "--mac", macS, "--host", "h1", "--ip", "10.7.0.1")
	answers(t, time.Now(), 7, macA, ipH1, a, b)
	child(t, dsn, "move-vnic", "--vnetid", "7", "--mac", macS, "--host", "h2")
	answers(t, time.Now(), 7, macA, ipH2, b, a)
	a.check(t, dsn)
	b.check(t, dsn)
}

// TestServeCatchesUpLostNotification: a change committed while the
// server's LISTEN connection is dead (killed, and kept from reconnecting,
// as while PostgreSQL restarts) has its notification lost; the server
// still answers it once it can read the store, and the changes after it
// within the bound.
func TestServeCatchesUpLostNotification(t *testing.T) {
	t.Parallel()
	dsn, name := pgDatabase(t)
	ok(t, dsn, "add-host", "h1", ipH1.String())
	ok(t, dsn, "add-host", "h2", ipH2.String())
	// The writer connects before connections to the database are
	// refused.
	w, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	s := serve(t, dsn)
	admin := pgDB(t, pg.DSN)
	pid := listenerPID(t, admin, name, 0)

	if _, err := admin.Exec("ALTER DATABASE " + name + " ALLOW_CONNECTIONS false"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(`SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	for gone := false; !gone; {
		if err := admin.QueryRow(`SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)`, pid).Scan(&gone); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond) // polling pg_stat_activity: no way to wait on it
	}
	// Nobody LISTENs: this change's notification is lost.
	if err := w.AddVNIC(context.Background(), store.VNIC{VNetID: 7, MAC: macA, Host: "h1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec("ALTER DATABASE " + name + " ALLOW_CONNECTIONS true"); err != nil {
		t.Fatal(err)
	}
	since := time.Now()
	for ack := s.vl2(t, 7, macA); ack.Status != svpwire.StatusOK || ack.Addr != ipH1; ack = s.vl2(t, 7, macA) {
		if time.Since(since) > 10*time.Second {
			t.Fatalf("the change whose notification was lost is not answered 10 s later: %v %v\n%s", ack.Status, ack.Addr, s.log)
		}
		time.Sleep(5 * time.Millisecond) // polling over SVP, as a host would
	}
	t.Logf("caught up %v after connections were allowed again", time.Since(since).Round(time.Millisecond))
	listenerPID(t, admin, name, pid) // listening again: the bound holds again
	child(t, dsn, "move-vnic", "--vnetid", "7", "--mac", macS, "--host", "h2")
	answers(t, time.Now(), 7, macA, ipH2, s)
	s.check(t, dsn)
}

// listenerPID returns the backend that LISTENs on database name, other
// than not.
func listenerPID(t *testing.T, db *sql.DB, name string, not int) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var pid int
		err := db.QueryRow(`SELECT pid FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'LISTEN%' AND pid <> $2`, name, not).Scan(&pid)
		if err == nil {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("no LISTEN connection on the database after 10 s: %v", err)
		}
		time.Sleep(10 * time.Millisecond) // polling pg_stat_activity: no way to wait on it
	}
}

// TestServeAdmin: /metrics reports the index and the connections, and
// check --dump against a URL that is not an index fails clearly.
func TestServeAdmin(t *testing.T) {
	t.Parallel()
	dsn := newDSN(t)
	ok(t, dsn, "add-host", "h1", ipH1.String())
	ok(t, dsn, "add-vnic", "--vnetid", "7", "--mac", macS, "--host", "h1", "--ip", "10.7.0.1")
	s := serve(t, dsn)
	if got := s.metric(t, "portolan_index_vl2"); got != "1" {
		t.Errorf("portolan_index_vl2 %s, want 1", got)
	}
	if got := s.metric(t, "portolan_index_store_failing"); got != "0" {
		t.Errorf("portolan_index_store_failing %s, want 0", got)
	}
	if got := s.metric(t, "portolan_log_removals_pending"); got != "0" {
		t.Errorf("portolan_log_removals_pending %s, want 0", got)
	}
	// An execution trace, for finding where goroutines wait under load.
	resp, err := http.Get("http://" + s.admin + "/debug/pprof/trace?seconds=0.05")
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 16)
	n, _ := io.ReadFull(resp.Body, head)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(head[:n]), "go 1.") {
		t.Errorf("/debug/pprof/trace: status %d, starts %q, want a Go execution trace", resp.StatusCode, head[:n])
	}
	code, _, errs := cmd(t, dsn, "check", "--dump", "http://"+s.admin+"/nothing")
	if code != 1 || !strings.Contains(errs, "404") || !strings.Contains(errs, "--admin") {
		t.Errorf("check --dump of a wrong URL: exit %d, stderr %q", code, errs)
	}
	s.check(t, dsn)
}

// TestServeAPI: serve --api takes the administration subcommands over the
// network (portolan --server), with the token; without it they are
// refused and change nothing; the changes reach the index like any other.
func TestServeAPI(t *testing.T) {
	t.Parallel()
	dsn := newDSN(t)
	ok(t, dsn, "add-host", "h1", ipH1.String())
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("tok-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := serve(t, dsn, "--api", "127.0.0.1:0", "--api-token-file", tokenFile)
	url := "http://" + s.api
	remote := func(args ...string) (int, string, string) {
		return run(t, append([]string{args[0], "--server", url, "--token-file", tokenFile}, args[1:]...)...)
	}
	if code, _, errs := remote("add-vnic", "--vnetid", "7", "--mac", macS, "--host", "h1", "--ip", "10.7.0.1"); code != 0 {
		t.Fatalf("add-vnic --server: exit %d, %s", code, errs)
	}
	for _, show := range [][]string{{"show-vnics", "-p", "-o", "all"}, {"show-hosts", "-p", "-o", "all"}} {
		code, out, errs := remote(show...)
		if want := ok(t, dsn, show[0], show[1:]...); code != 0 || out != want || !strings.Contains(out, "h1") {
			t.Errorf("%s --server: exit %d, %q %s; the store says %q", show[0], code, out, errs, want)
		}
	}
	if out := ok(t, dsn, "show-vnics", "-p", "-o", "host"); out != "h1\n" {
		t.Errorf("the store after add-vnic --server: %q", out)
	}
	// Without the token: refused, nothing changed.
	code, _, errs := run(t, "remove-vnic", "--server", url, "--vnetid", "7", "--mac", macS)
	if code != 1 || !strings.Contains(errs, "missing token") {
		t.Errorf("remove-vnic without the token: exit %d, %q", code, errs)
	}
	if out := ok(t, dsn, "show-vnics", "-p", "-o", "host"); out != "h1\n" {
		t.Errorf("a refused request changed the store: %q", out)
	}
	// Errors come back as the command's would.
	if code, _, errs := remote("move-vnic", "--vnetid", "7", "--mac", macS, "--host", "nohost"); code != 1 || errs == "" {
		t.Errorf("move-vnic to an unknown host: exit %d, %q", code, errs)
	}
	s.check(t, dsn)

	// Flags that do not go together are usage errors.
	for _, args := range [][]string{
		{"serve", "--store", dsn, "--api", "127.0.0.1:0"},
		{"serve", "--store", dsn, "--api-open-reads"},
		{"show-hosts", "--server", url, "--store", dsn},
		{"show-hosts", "--server", "portolan:1297"},
	} {
		if code, _, errs := run(t, args...); code != 2 {
			t.Errorf("%q: exit %d (%q), want a usage error", args, code, errs)
		}
	}
}
