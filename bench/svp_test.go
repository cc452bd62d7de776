package bench

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"overlaynet/pgtemp"
)

// bin holds a portolan built for these tests.
var bin string

func TestMain(m *testing.M) {
	CeilingMain() // the svp test runs this binary again as the ceiling
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "benchtest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/portolan")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build portolan: %v\n%s", err, out)
		return 1
	}
	bin = dir
	return m.Run()
}

func needPostgres(t *testing.T) {
	if err := pgtemp.Available(); err != nil {
		t.Skipf("SKIP: no PostgreSQL here, so neither the postgres rows nor this test: %v", err)
	}
}

// TestSVPQuick runs the svp benchmark at a tiny size against the real
// portolan and checks every row is there and clean.
func TestSVPQuick(t *testing.T) {
	needPostgres(t)
	var log bytes.Buffer
	o := SVPOptions{Mappings: 2000, Pipelined: []int{1, 4}, Depth: 32, Unpipelined: 20,
		Duration: 300 * time.Millisecond, Bin: bin, Log: &log}
	rep, err := SVP(o)
	if err != nil {
		t.Fatalf("SVP: %v\n%s", err, log.String())
	}
	var out bytes.Buffer
	PrintSVP(&out, rep)
	t.Logf("\n%s", out.String())
	for _, srv := range []string{"ceiling", "sqlite", "postgres"} {
		for _, sh := range []shape{{1, 32}, {4, 32}, {20, 1}} {
			found := false
			for _, r := range rep.Rows {
				if r.Server != srv || r.Conns != sh.conns || r.Depth != sh.depth {
					continue
				}
				found = true
				if r.Errors != 0 || r.FirstErr != "" || r.Lookups == 0 || r.Ratio <= 0 || r.P99 <= 0 {
					t.Errorf("%s %d x %d: %+v", srv, sh.conns, sh.depth, r)
				}
			}
			if !found {
				t.Errorf("no row for %s %d x %d", srv, sh.conns, sh.depth)
			}
		}
	}
	if len(rep.Servers) != 3 {
		t.Errorf("servers: %+v", rep.Servers)
	}
	for _, s := range rep.Servers {
		if s.Start <= 0 || s.PeakRSS == 0 {
			t.Errorf("server %+v: no start time or RSS", s)
		}
	}
	for _, want := range []string{"LOOKUPS/S", "VS CEILING", "START (EXEC TO FIRST LOOKUP)", "pinned"} {
		if !strings.Contains(out.String(), want) && !(want == "pinned" && strings.Contains(out.String(), "not pinned")) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out.String(), "error:") {
		t.Errorf("output reports errors")
	}
}

// TestScaleQuick runs the scale simulation at a tiny size, one portolan
// on SQLite and two on PostgreSQL, and checks every host connected,
// polled its log and got every change.
func TestScaleQuick(t *testing.T) {
	needPostgres(t)
	var log bytes.Buffer
	o := ScaleOptions{Hosts: 50, LookupRate: 500, Duration: time.Second, Changes: 2,
		Configs: []string{"sqlite", "postgres2"}, Bin: bin, Log: &log}
	rs, err := Scale(o)
	if err != nil {
		t.Fatalf("Scale: %v\n%s", err, log.String())
	}
	var out bytes.Buffer
	PrintScale(&out, o, rs)
	t.Logf("\n%s", out.String())
	if len(rs) != 2 {
		t.Fatalf("%d results, want 2", len(rs))
	}
	for _, r := range rs {
		if r.ConnectFailed != 0 || r.ConnectErrors != 0 || r.Ready != o.Hosts || r.ConnErrors != 0 ||
			r.LookupErrors != 0 || r.Lookups == 0 || r.LogErrors != 0 || r.FirstErr != "" {
			t.Errorf("%s: %+v", r.Config, r)
		}
		if len(r.ServerCPU) != r.Servers || len(r.ServerRSS) != r.Servers {
			t.Errorf("%s: CPU %v RSS %v for %d servers", r.Config, r.ServerCPU, r.ServerRSS, r.Servers)
		}
		if len(r.Changes) != o.Changes {
			t.Errorf("%s: %d changes timed, want %d", r.Config, len(r.Changes), o.Changes)
		}
		for k, c := range r.Changes {
			if m := sum(c.Missed); m != 0 {
				t.Errorf("%s: change %d missed %d hosts", r.Config, k+1, m)
			}
			if len(c.ByServer) != r.Servers {
				t.Errorf("%s: change %d: %d server groups", r.Config, k+1, len(c.ByServer))
			}
		}
	}
	for _, want := range []string{"LOOKUPS/S", "SERVER CPU", "change propagation", "portolan 2", "sqlite", "postgres2"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
