// Package integration tests overlayd end to end: real network namespaces
// as hosts, real overlayd processes, real TAP devices, real UDP, and real
// peers (the kernel's vxlan driver, tshark, iperf3). The tests need root;
// run as another user, each one skips and says so.
package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"overlaynet/netlab"
)

// The daemons are built once, by the first test that needs them (none is
// built when every test skips).
var build struct {
	once sync.Once
	dir  string // temporary, removed at the end
	bin  string // the binaries, in dir
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// needRoot skips the test, visibly and saying why, unless it runs as root.
// newLab and need call it, so that every test skips before it touches
// the system.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the integration tests build network namespaces, TAP devices and vxlan links (run them as root)")
	}
}

// mainPassOnly marks a test whose behaviour depends neither on the
// userspace data path's offloads nor on its worker count (control plane,
// store, state, the kernel data path): it runs in the suite's main pass
// and skips, saying so, in the passes that scripts/test repeats with
// NETLAB_OVERLAYD_ARGS set. A test that carries guest traffic through the
// userspace data path must not call it.
func mainPassOnly(t *testing.T) {
	t.Helper()
	if a := os.Getenv(netlab.ExtraArgsEnv); a != "" {
		t.Skipf("does not depend on %s=%q: runs in the main pass only", netlab.ExtraArgsEnv, a)
	}
}

// binDir returns the directory of the freshly built overlayd, overlayadm
// and portolan.
func binDir(t *testing.T) string {
	t.Helper()
	build.once.Do(func() {
		if build.dir, build.err = os.MkdirTemp("", "overlay-bin-"); build.err != nil {
			return
		}
		build.bin, build.err = netlab.Build(build.dir)
	})
	if build.err != nil {
		t.Fatalf("building the daemons: %v", build.err)
	}
	return build.bin
}

// newLab returns a lab torn down when the test ends; on failure the
// daemons' logs are printed first.
func newLab(t *testing.T) *netlab.Lab {
	t.Helper()
	needRoot(t)
	l, err := netlab.New(binDir(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := exec.Command("sh", "-c", "tail -n 40 "+l.Dir+"/*.log").CombinedOutput()
			t.Logf("lab logs:\n%s", logs)
		}
		l.Close()
	})
	return l
}

// need skips the test when a tool is missing (.ci/run installs them all).
func need(t *testing.T, tools ...string) {
	t.Helper()
	needRoot(t)
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (scripts/install-deps installs the test tools)", tool)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// twoHostsDirect builds two hosts with overlayd each and overlay ov0
// (vnetid 42, direct) between them, one VNIC on each moved into a guest
// with 10.9.0.1 and 10.9.0.2.
func twoHostsDirect(t *testing.T, extra ...string) (l *netlab.Lab, d1, d2 *netlab.Daemon, g1, g2 *netlab.NS) {
	t.Helper()
	l = newLab(t)
	h1, h2, err := l.TwoHosts()
	must(t, err)
	p, err := l.DirectPair(h1, h2, nil, extra...)
	must(t, err)
	return l, p.D1, p.D2, p.G1, p.G2
}

// twoDaemons builds two hosts joined by an underlay, with overlayd on each.
func twoDaemons(t *testing.T) (l *netlab.Lab, d1, d2 *netlab.Daemon) {
	t.Helper()
	l = newLab(t)
	h1, h2, err := l.TwoHosts()
	must(t, err)
	d1, err = l.StartDaemon(h1)
	must(t, err)
	d2, err = l.StartDaemon(h2)
	must(t, err)
	return l, d1, d2
}

// forEachDataPath runs a test on each data path.
func forEachDataPath(t *testing.T, fn func(t *testing.T, dp string)) {
	needRoot(t)
	for _, dp := range []string{"userspace", "kernel"} {
		t.Run(dp, func(t *testing.T) { fn(t, dp) })
	}
}

// iperfBytes runs an iperf3 TCP client in client against server (an
// iperf3 -s already started, perhaps not yet listening) for two seconds
// with the given number of streams, and returns the bytes received; it
// fails the test when nothing arrived.
func iperfBytes(t *testing.T, client *netlab.NS, server string, streams int) uint64 {
	t.Helper()
	var res struct {
		End struct {
			SumReceived struct {
				Bytes uint64 `json:"bytes"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	var out string
	var err error
	for i := 0; i < 50; i++ { // until the server listens
		// iperf3 -J may exit 0 and report the failure in the JSON.
		if out, err = client.Exec("iperf3", "-c", server, "-t", "2", "-P", strconv.Itoa(streams), "-J"); err == nil && !strings.Contains(out, `"error":`) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	must(t, err)
	must(t, json.Unmarshal([]byte(out), &res))
	if res.End.SumReceived.Bytes == 0 {
		t.Fatalf("iperf3 with %d streams transferred nothing: %s", streams, out)
	}
	return res.End.SumReceived.Bytes
}

// waitUDPListen waits until a UDP socket in ns is bound to port: a
// server started in the background is then ready for its first datagram.
func waitUDPListen(t *testing.T, ns *netlab.NS, port int) {
	t.Helper()
	filter := fmt.Sprintf("sport = :%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := ns.Exec("ss", "-H", "-l", "-u", "-n", filter)
		if err == nil && strings.TrimSpace(out) != "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on UDP port %d in %s after 10 s (ss: %v %q)", port, ns.Name, err, out)
		}
		time.Sleep(20 * time.Millisecond) // between polls
	}
}
