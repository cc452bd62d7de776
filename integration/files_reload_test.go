package integration

import (
	"strings"
	"testing"
	"time"

	"overlaynet/netlab"
)

// TestFilesReloadMovesMAC: editing the map to move a MAC to another host
// re-routes its traffic within a second, with no restart; a ping running
// throughout loses at most that second.
func TestFilesReloadMovesMAC(t *testing.T) {
	forEachDataPath(t, testFilesReloadMovesMAC)
}

func testFilesReloadMovesMAC(t *testing.T, dp string) {
	need(t, "ping")
	f := newFilesNet(t, 3, "-p", "datapath="+dp)
	g1 := f.vnic(t, 0, 1, "10.8.0.1", "")
	// The same MAC and address on hosts 2 and 3: where the file points
	// decides which one answers.
	f.vnic(t, 1, 2, "10.8.0.2", "")
	_, err := f.ds[2].Adm("create-vnic", "-l", "ov0", "-m", guestMAC(2), "vn2b")
	must(t, err)
	_, err = f.ds[2].Guest("g2b", "vn2b", "10.8.0.2/24")
	must(t, err)
	f.publish(t) // guest 2 at host 2
	must(t, g1.PingAll("10.8.0.2", 2))

	const interval, count = 0.05, 80 // four seconds of pings
	ping, err := g1.StartPing("10.8.0.2", count, interval)
	must(t, err)
	defer ping.Stop()
	// The move comes once pings flow, with most of the run still to go
	// (a third of it at most is waited for).
	must(t, ping.WaitReplies(10, 5*time.Second))
	before2, _ := f.ds[1].Stat("ov0", "decapsulated")
	before3, _ := f.ds[2].Stat("ov0", "decapsulated")
	f.entries[guestMAC(2)]["ip"] = netlab.HostIP(3)
	f.write(t) // no refresh: overlayd notices the change by itself
	if r := ping.Replies(); r > count/2 {
		t.Fatalf("the move came after %d of %d pings", r, count)
	}
	got, out, err := ping.Wait()
	after2, _ := f.ds[1].Stat("ov0", "decapsulated")
	after3, _ := f.ds[2].Stat("ov0", "decapsulated")
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	lost := count - got
	t.Logf("lost %d of %d pings (%.2f s) across the move", lost, count, float64(lost)*interval)
	if float64(lost)*interval > 1.0 {
		t.Errorf("lost %d pings (%.2f s), want at most 1 s worth", lost, float64(lost)*interval)
	}
	if after3-before3 < 20 {
		t.Errorf("host 3 received %d frames after the move, want the pings", after3-before3)
	}
	// Host 2 may see a few in flight, not the rest of the run.
	if after2-before2 > 25 {
		t.Errorf("host 2 still received %d frames after the move", after2-before2)
	}
	out, err = f.ds[0].Adm("show-overlay", "-t", "-p", "-o", "target,destination", "ov0")
	must(t, err)
	if !strings.Contains(out, `2\:8\:20\:0\:0\:2:198.18.0.3\:4789`) {
		t.Errorf("target table does not show the move:\n%s", out)
	}
}

// TestFilesMalformed: each kind of bad file gives a precise error, keeps
// the old map in force, marks the overlay DEGRADED, and the state clears
// when the file is fixed.
func TestFilesMalformed(t *testing.T) {
	mainPassOnly(t)
	forEachDataPath(t, testFilesMalformed)
}

func testFilesMalformed(t *testing.T, dp string) {
	need(t, "ping")
	f := newFilesNet(t, 2, "-p", "datapath="+dp)
	g1 := f.vnic(t, 0, 1, "10.8.0.1", "")
	f.vnic(t, 1, 2, "10.8.0.2", "")
	f.publish(t)
	must(t, g1.PingAll("10.8.0.2", 1))
	good := `{
  "2:8:20:0:0:1": {"ip": "198.18.0.1", "port": 4789, "arp": "10.8.0.1"},
  "2:8:20:0:0:2": {"ip": "198.18.0.2", "port": 4789, "arp": "10.8.0.2"}
}`
	cases := []struct {
		name string
		file string
		want []string // in the error and the DEGRADED reason
	}{
		{"invalid JSON", strings.Replace(good, `4789, "arp": "10.8.0.2"}`, `4789, "arp": "10.8.0.2",}`, 1),
			[]string{":3:", "malformed JSON"}},
		{"bad MAC", strings.Replace(good, `"2:8:20:0:0:2"`, `"2:8:20:0:0:2:7"`, 1),
			[]string{":3:3:", `"2:8:20:0:0:2:7"`, "not a MAC"}},
		{"bad IP", strings.Replace(good, `"198.18.0.2"`, `"198.18.0.300"`, 1),
			[]string{":3:26:", `"2:8:20:0:0:2"`, `"ip"`, "198.18.0.300"}},
		{"missing port", strings.Replace(good, `"port": 4789, "arp": "10.8.0.2"`, `"arp": "10.8.0.2"`, 1),
			[]string{":3:19:", `"2:8:20:0:0:2"`, `missing "port"`}},
		{"port as a string", strings.Replace(good, `"port": 4789, "arp": "10.8.0.2"`, `"port": "4789", "arp": "10.8.0.2"`, 1),
			[]string{":3:48:", `"port"`, "number"}},
		{"ip as a number", strings.Replace(good, `"198.18.0.2"`, `19818002`, 1),
			[]string{":3:26:", `"ip"`, "must be a string"}},
		{"not an object", `["2:8:20:0:0:1"]`, []string{":1:1:", "one JSON object"}},
	}
	for _, c := range cases {
		writeFile(t, f.path, []byte(c.file))
		_, err := f.ds[0].Adm("refresh-overlay", "ov0")
		if err == nil {
			t.Fatalf("%s: refresh-overlay accepted the file", c.name)
		}
		for _, w := range append([]string{f.path}, c.want...) {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", c.name, err, w)
			}
		}
		waitStatus(t, f.ds[0], "DEGRADED", append([]string{"previous map kept"}, c.want...)...)
		// The old map is still in force: a fresh lookup is answered.
		_, err = f.ds[0].Adm("modify-overlay", "-f", "ov0")
		must(t, err)
		if dp == "kernel" {
			// The kernel drops the frame that missed; the next finds
			// the answer installed.
			if got, _ := g1.Ping("10.8.0.2", 3); got == 0 {
				t.Errorf("%s: traffic stopped with the old map in force", c.name)
			}
		} else if err := g1.PingAll("10.8.0.2", 1); err != nil {
			t.Errorf("%s: traffic stopped with the old map in force: %v", c.name, err)
		}
	}
	writeFile(t, f.path, []byte(good))
	waitStatus(t, f.ds[0], "ONLINE")
	must(t, g1.PingAll("10.8.0.2", 1))
}
