// Package integration tests overlayd end to end: real network namespaces
// as hosts, real overlayd processes, real TAP devices, real UDP, and real
// peers (the kernel's vxlan driver, tshark, iperf3). The tests need root.
package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"overlaynet/netlab"
)

var binDir string

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("integration tests need root; skipping")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "overlay-bin-")
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	if binDir, err = netlab.Build(dir); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// newLab returns a lab torn down when the test ends; on failure the
// daemons' logs are printed first.
func newLab(t *testing.T) *netlab.Lab {
	t.Helper()
	l, err := netlab.New(binDir)
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
