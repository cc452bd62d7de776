package files

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"overlaynet/encap"
	"overlaynet/ether"
	"overlaynet/prop"
	"overlaynet/search"
)

// fakeHost records what an instance asks of its overlay.
type fakeHost struct {
	mu          sync.Mutex
	learned     map[ether.MAC]search.Answer
	invalidated []ether.MAC
	degraded    []string
	restores    int
}

func (h *fakeHost) Invalidate(mac ether.MAC) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.invalidated = append(h.invalidated, mac)
}

func (h *fakeHost) Degrade(reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.degraded = append(h.degraded, reason)
}

func (h *fakeHost) Restore() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.restores++
}

// take returns what was recorded since the last take, invalidated MACs
// sorted, and forgets it.
func (h *fakeHost) take() (invalidated []ether.MAC, degraded []string, restores int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	invalidated, degraded, restores = h.invalidated, h.degraded, h.restores
	h.invalidated, h.degraded, h.restores = nil, nil, 0
	slices.SortFunc(invalidated, func(a, b ether.MAC) int { return slices.Compare(a[:], b[:]) })
	return invalidated, degraded, restores
}

// pluginInstance is an instance with everything the files plugin
// implements.
type pluginInstance interface {
	search.DynamicInstance
	search.IPResolver
	search.DHCPResolver
	search.Refresher
}

// newTestInstance creates (but does not start) a files instance for a
// VXLAN-like overlay reading path, the way the daemon does.
func newTestInstance(t *testing.T, path string, host search.Host) pluginInstance {
	t.Helper()
	plugin, ok := search.Lookup("files")
	if !ok {
		t.Fatal(`search plugin "files" is not registered`)
	}
	if plugin.Mode != search.Dynamic {
		t.Errorf("files plugin mode %v, want dynamic", plugin.Mode)
	}
	dt := encap.DestIP | encap.DestPort
	props := prop.NewSet(plugin.Props(dt))
	if err := props.Set(PropConfig, path); err != nil {
		t.Fatalf("set %s: %v", PropConfig, err)
	}
	inst, err := plugin.New(search.Config{Props: props, Dest: dt, VNetID: 42,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Host: host})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	pi, ok := inst.(pluginInstance)
	if !ok {
		t.Fatalf("instance %T lacks Lookup, ResolveIP, DHCPServer or Refresh", inst)
	}
	return pi
}

// startInstance creates and starts an instance on a file holding content,
// stopping it when the test ends.
func startInstance(t *testing.T, content string) (pluginInstance, *fakeHost, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "overlay.json")
	writeFile(t, path, content)
	host := &fakeHost{}
	in := newTestInstance(t, path, host)
	if err := in.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(in.Stop)
	return in, host, path
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// replaceFile writes content to a temporary file and renames it over
// path, as editors and configuration managers do.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	writeFile(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond until it holds, failing the test after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

const (
	macA = "2:8:20:aa:bb:1"
	macB = "2:8:20:aa:bb:2"
	macC = "2:8:20:aa:bb:3"
	macD = "2:8:20:aa:bb:4"
	macS = "2:8:20:aa:bb:fe"
)

// mapV1 is the map the instance tests start from.
const mapV1 = `{
  "2:8:20:aa:bb:1": {"ip": "192.0.2.1", "port": 4789, "arp": "10.1.0.1", "ndp": "fd00::1"},
  "2:8:20:aa:bb:2": {"ip": "192.0.2.2", "port": 4789, "arp": "10.1.0.2", "dhcp-proxy": "2:8:20:aa:bb:fe"},
  "2:8:20:aa:bb:3": {"ip": "2001:db8::3", "port": 4790, "ndp": "fd00::3"},
  "2:8:20:aa:bb:fe": {"ip": "192.0.2.254", "port": 4789, "arp": "10.1.0.254"}
}
`

// mapV2 changes A's underlay IP, removes C, adds D and leaves B and the
// DHCP server alone (B's arp changes, which is not a target change).
const mapV2 = `{
  "2:8:20:aa:bb:1": {"ip": "192.0.2.101", "port": 4789, "arp": "10.1.0.1", "ndp": "fd00::1"},
  "2:8:20:aa:bb:2": {"ip": "192.0.2.2", "port": 4789, "arp": "10.1.0.22", "dhcp-proxy": "2:8:20:aa:bb:fe"},
  "2:8:20:aa:bb:4": {"ip": "192.0.2.4", "port": 4789, "arp": "10.1.0.4"},
  "02:08:20:aa:bb:fe": {"port": 4789, "arp": "10.1.0.254", "ip": "192.0.2.254"}
}
`

func lookup(t *testing.T, in pluginInstance, m string) (encap.Dest, error) {
	t.Helper()
	return in.Lookup(context.Background(), 0, mac(t, m))
}

func wantDest(t *testing.T, in pluginInstance, m string, want encap.Dest) {
	t.Helper()
	got, err := lookup(t, in, m)
	if err != nil || got != want {
		t.Errorf("Lookup(%s) = %v, %v, want %v", m, got, err, want)
	}
}

func wantNoDest(t *testing.T, in pluginInstance, m string) {
	t.Helper()
	got, err := lookup(t, in, m)
	if !errors.Is(err, search.ErrNotFound) {
		t.Errorf("Lookup(%s) = %v, %v, want ErrNotFound", m, got, err)
	}
}

func wantResolve(t *testing.T, in pluginInstance, ip, m string) {
	t.Helper()
	got, err := in.ResolveIP(context.Background(), 0, netip.MustParseAddr(ip))
	if m == "" {
		if !errors.Is(err, search.ErrNotFound) {
			t.Errorf("ResolveIP(%s) = %v, %v, want ErrNotFound", ip, got, err)
		}
		return
	}
	if err != nil || got != mac(t, m) {
		t.Errorf("ResolveIP(%s) = %v, %v, want %s", ip, got, err, m)
	}
}

// wantV1 checks that the instance answers from mapV1.
func wantV1(t *testing.T, in pluginInstance) {
	t.Helper()
	wantDest(t, in, macA, dest("192.0.2.1", 4789))
	wantDest(t, in, macC, dest("2001:db8::3", 4790))
	wantNoDest(t, in, macD)
	wantResolve(t, in, "10.1.0.2", macB)
	wantResolve(t, in, "fd00::3", macC)
}

func macs(t *testing.T, ms ...string) []ether.MAC {
	var out []ether.MAC
	for _, m := range ms {
		out = append(out, mac(t, m))
	}
	slices.SortFunc(out, func(a, b ether.MAC) int { return slices.Compare(a[:], b[:]) })
	return out
}

func TestPluginRegistration(t *testing.T) {
	plugin, ok := search.Lookup("files")
	if !ok {
		t.Fatal(`"files" not registered`)
	}
	props := prop.NewSet(plugin.Props(encap.DestIP | encap.DestPort))
	d, ok := props.Desc(PropConfig)
	if !ok || !d.Required || d.Type != prop.String || d.Perm != prop.ReadWrite {
		t.Errorf("%s: %+v, %v; want a required rw string", PropConfig, d, ok)
	}
	if err := props.Set(PropConfig, "relative/map.json"); err == nil {
		t.Errorf("a relative path was accepted")
	}
	_, err := plugin.New(search.Config{Props: props, Dest: encap.DestEthernet,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Host: &fakeHost{}})
	if err == nil {
		t.Errorf("New accepted an Ethernet destination")
	}
}

func TestStartMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent.json")
	host := &fakeHost{}
	in := newTestInstance(t, path, host)
	err := in.Start()
	if err == nil {
		in.Stop()
		t.Fatal("Start succeeded on a missing file")
	}
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), PropConfig) {
		t.Errorf("Start error %q does not say that %s does not exist", err, path)
	}
	in.Stop() // after a failed Start: must not block
	if inv, deg, res := host.take(); inv != nil || deg != nil || res != 0 {
		t.Errorf("host got %v %q %d", inv, deg, res)
	}
}

func TestStartMalformedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.json")
	writeFile(t, path, "{\n  \"2:8:20:aa:bb:1\": {\"ip\": \"192.0.2.1\", \"port\": \"4789\"}\n}\n")
	in := newTestInstance(t, path, &fakeHost{})
	err := in.Start()
	if err == nil {
		in.Stop()
		t.Fatal("Start succeeded on a malformed file")
	}
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Path != path || pe.Line != 2 || pe.Col != 49 || pe.Key != macA {
		t.Fatalf("Start error %v, want a ParseError at %s:2:49 in %s", err, path, macA)
	}
	if want := fmt.Sprintf("%s:2:49: entry %q: ", path, macA); !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Start error %q, want it to start with %q", err, want)
	}
	in.Stop()
}

func TestLookups(t *testing.T) {
	in, host, _ := startInstance(t, mapV1)
	ctx := context.Background()

	wantDest(t, in, macA, dest("192.0.2.1", 4789))
	wantDest(t, in, "02:08:20:aa:bb:02", dest("192.0.2.2", 4789))
	wantDest(t, in, macC, dest("2001:db8::3", 4790))
	wantDest(t, in, macS, dest("192.0.2.254", 4789))
	wantNoDest(t, in, macD)
	wantNoDest(t, in, "ff:ff:ff:ff:ff:ff")
	// The VLAN does not matter.
	if got, err := in.Lookup(ctx, 100, mac(t, macA)); err != nil || got != dest("192.0.2.1", 4789) {
		t.Errorf("Lookup on VLAN 100 = %v, %v", got, err)
	}

	wantResolve(t, in, "10.1.0.1", macA)
	wantResolve(t, in, "fd00::1", macA)
	wantResolve(t, in, "10.1.0.2", macB)
	wantResolve(t, in, "fd00::3", macC)
	wantResolve(t, in, "10.1.0.254", macS)
	wantResolve(t, in, "10.1.0.3", "")
	wantResolve(t, in, "fd00::2", "")
	wantResolve(t, in, "192.0.2.1", "")

	if got, err := in.DHCPServer(ctx, 0, mac(t, macB)); err != nil || got != mac(t, macS) {
		t.Errorf("DHCPServer(B) = %v, %v, want %s", got, err, macS)
	}
	for _, m := range []string{macA, macD, macS} {
		if got, err := in.DHCPServer(ctx, 0, mac(t, m)); !errors.Is(err, search.ErrNotFound) {
			t.Errorf("DHCPServer(%s) = %v, %v, want ErrNotFound", m, got, err)
		}
	}
	if inv, deg, res := host.take(); inv != nil || deg != nil || res != 0 {
		t.Errorf("Start asked the host for %v %q %d", inv, deg, res)
	}
}

func TestRefresh(t *testing.T) {
	in, host, path := startInstance(t, mapV1)

	// Unchanged: nothing invalidated, but the overlay is (still) fine.
	if err := in.Refresh(); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	inv, deg, res := host.take()
	if inv != nil || deg != nil || res != 1 {
		t.Errorf("unchanged Refresh: invalidated %v, degraded %q, %d restores; want none, none, 1", inv, deg, res)
	}

	// One entry's ip changes.
	writeFile(t, path, strings.Replace(mapV1, `"192.0.2.1"`, `"192.0.2.11"`, 1))
	if err := in.Refresh(); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	inv, deg, res = host.take()
	if want := macs(t, macA); !slices.Equal(inv, want) || deg != nil || res != 1 {
		t.Errorf("Refresh after A moved: invalidated %v, degraded %q, %d restores; want %v, none, 1", inv, deg, res, want)
	}
	wantDest(t, in, macA, dest("192.0.2.11", 4789))
	wantDest(t, in, macB, dest("192.0.2.2", 4789))

	// A port change is a change too.
	writeFile(t, path, strings.Replace(mapV1, `"port": 4790`, `"port": 4791`, 1))
	if err := in.Refresh(); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	inv, _, res = host.take()
	if want := macs(t, macA, macC); !slices.Equal(inv, want) || res != 1 {
		t.Errorf("Refresh: invalidated %v, %d restores; want %v, 1", inv, res, want)
	}
	wantDest(t, in, macC, dest("2001:db8::3", 4791))

	// Back to mapV1, then to mapV2: A changed, C removed, D added.
	writeFile(t, path, mapV1)
	if err := in.Refresh(); err != nil {
		t.Fatal(err)
	}
	host.take()
	writeFile(t, path, mapV2)
	if err := in.Refresh(); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	inv, deg, res = host.take()
	if want := macs(t, macA, macC, macD); !slices.Equal(inv, want) || deg != nil || res != 1 {
		t.Errorf("Refresh to mapV2: invalidated %v, degraded %q, %d restores; want %v, none, 1", inv, deg, res, want)
	}
	wantDest(t, in, macA, dest("192.0.2.101", 4789))
	wantNoDest(t, in, macC)
	wantDest(t, in, macD, dest("192.0.2.4", 4789))
	wantResolve(t, in, "10.1.0.22", macB)
	wantResolve(t, in, "10.1.0.2", "")
	wantResolve(t, in, "fd00::3", "")
	wantResolve(t, in, "10.1.0.4", macD)
	// B's new address is learnt (for data paths that answer ARP from a
	// table), with its DHCP server, and without a destination to install.
	if b := host.learnt(t, macB); b.Dest.IP.IsValid() || !slices.Equal(b.IPs, []netip.Addr{netip.MustParseAddr("10.1.0.22")}) || b.DHCPServer != mac(t, macS) {
		t.Errorf("learnt for B after its arp changed: %+v", b)
	}
	if d := host.learnt(t, macD); d.Dest != dest("192.0.2.4", 4789) || !slices.Equal(d.IPs, []netip.Addr{netip.MustParseAddr("10.1.0.4")}) {
		t.Errorf("learnt for the new D: %+v", d)
	}
}

func TestRefreshBadFile(t *testing.T) {
	in, host, path := startInstance(t, mapV1)

	// A malformed rewrite: line 3 has the port as a string.
	bad := strings.Replace(mapV1, `"port": 4789, "arp": "10.1.0.2"`, `"port": "4789", "arp": "10.1.0.2"`, 1)
	writeFile(t, path, bad)
	err := in.Refresh()
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Path != path || pe.Line != 3 || pe.Col != 49 || pe.Key != macB {
		t.Fatalf("Refresh = %v, want a ParseError at %s:3:49 in %s", err, path, macB)
	}
	inv, deg, res := host.take()
	if inv != nil || res != 0 || len(deg) != 1 {
		t.Fatalf("bad Refresh: invalidated %v, degraded %q, %d restores; want none, one, 0", inv, deg, res)
	}
	if want := path + ":3:49"; !strings.Contains(deg[0], want) || !strings.Contains(deg[0], macB) {
		t.Errorf("Degrade reason %q lacks %q or the entry", deg[0], want)
	}
	wantV1(t, in) // the old map stays

	// Still bad, differently: degraded again, still the old map.
	writeFile(t, path, mapV2[:len(mapV2)/2])
	err = in.Refresh()
	if !errors.As(err, &pe) || !strings.Contains(pe.Msg, "ends early") {
		t.Fatalf("Refresh = %v, want a ParseError for a truncated file", err)
	}
	if inv, deg, res := host.take(); inv != nil || res != 0 || len(deg) != 1 || !strings.Contains(deg[0], path) {
		t.Errorf("bad Refresh: invalidated %v, degraded %q, %d restores", inv, deg, res)
	}
	wantV1(t, in)

	// The file is gone: the same.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := in.Refresh(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Refresh of a removed file = %v", err)
	}
	if inv, deg, res := host.take(); inv != nil || res != 0 || len(deg) != 1 || !strings.Contains(deg[0], path) {
		t.Errorf("Refresh of a removed file: invalidated %v, degraded %q, %d restores", inv, deg, res)
	}
	wantV1(t, in)

	// Fixed: restored, and what changed since the last good map is
	// invalidated.
	writeFile(t, path, mapV2)
	if err := in.Refresh(); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	inv, deg, res = host.take()
	if want := macs(t, macA, macC, macD); !slices.Equal(inv, want) || deg != nil || res != 1 {
		t.Errorf("good Refresh: invalidated %v, degraded %q, %d restores; want %v, none, 1", inv, deg, res, want)
	}
	wantDest(t, in, macA, dest("192.0.2.101", 4789))
	wantNoDest(t, in, macC)
}

// TestWatchRename replaces the file the way editors do, and expects the
// instance to notice by itself.
func TestWatchRename(t *testing.T) {
	in, host, path := startInstance(t, mapV1)
	replaceFile(t, path, mapV2)
	eventually(t, 2*time.Second, "Lookup(A) does not answer the new destination", func() bool {
		d, err := lookup(t, in, macA)
		return err == nil && d == dest("192.0.2.101", 4789)
	})
	wantDest(t, in, macD, dest("192.0.2.4", 4789))
	wantNoDest(t, in, macC)
	// The host hears of it just after the swap.
	eventually(t, 2*time.Second, "Restore not called", func() bool {
		host.mu.Lock()
		defer host.mu.Unlock()
		return host.restores > 0
	})
	inv, deg, _ := host.take()
	if deg != nil {
		t.Errorf("Degrade(%q) while replacing a good file with a good one", deg)
	}
	for _, m := range macs(t, macA, macC, macD) {
		if !slices.Contains(inv, m) {
			t.Errorf("%v not invalidated (invalidated %v)", m, inv)
		}
	}
	if slices.Contains(inv, mac(t, macB)) {
		t.Errorf("unchanged %s invalidated", macB)
	}

	// A bad replacement degrades the overlay by itself too.
	replaceFile(t, path, "{\n  \"2:8:20:aa:bb:1\": {\"ip\": \"192.0.2.1\"}\n}\n")
	eventually(t, 2*time.Second, "Degrade not called for a bad file", func() bool {
		host.mu.Lock()
		defer host.mu.Unlock()
		return len(host.degraded) > 0
	})
	_, deg, _ = host.take()
	if !strings.Contains(deg[0], path+":2:") || !strings.Contains(deg[0], `missing "port"`) {
		t.Errorf("Degrade reason %q", deg[0])
	}
	wantDest(t, in, macA, dest("192.0.2.101", 4789))
}

// TestWatchInPlace rewrites the file in place.
func TestWatchInPlace(t *testing.T) {
	in, _, path := startInstance(t, mapV1)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(mapV2); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "Lookup(A) does not answer the new destination", func() bool {
		d, err := lookup(t, in, macA)
		return err == nil && d == dest("192.0.2.101", 4789)
	})
	wantDest(t, in, macD, dest("192.0.2.4", 4789))
}

// TestWatchOtherFiles: changes to other files in the directory leave the
// map alone.
func TestWatchOtherFiles(t *testing.T) {
	in, host, path := startInstance(t, mapV1)
	writeFile(t, filepath.Join(filepath.Dir(path), "other.json"), "not JSON")
	// Then a change to the file itself, to know when events were seen.
	replaceFile(t, path, mapV2)
	eventually(t, 2*time.Second, "Lookup(A) does not answer the new destination", func() bool {
		d, err := lookup(t, in, macA)
		return err == nil && d == dest("192.0.2.101", 4789)
	})
	eventually(t, 2*time.Second, "Restore not called", func() bool {
		host.mu.Lock()
		defer host.mu.Unlock()
		return host.restores > 0
	})
	if _, deg, _ := host.take(); deg != nil {
		t.Errorf("Degrade(%q) for another file", deg)
	}
}

func TestStop(t *testing.T) {
	path := filepath.Join(t.TempDir(), "overlay.json")
	writeFile(t, path, mapV1)
	in := newTestInstance(t, path, &fakeHost{})
	if err := in.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan struct{})
	go func() {
		in.Stop()
		in.Stop() // twice is harmless
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(2 * time.Second):
		t.Fatal("Stop did not return")
	}
	select {
	case <-in.(*instance).done:
	default:
		t.Error("the watcher goroutine is still running")
	}
	// The map still answers; refreshing by hand still works.
	wantDest(t, in, macA, dest("192.0.2.1", 4789))
	writeFile(t, path, mapV2)
	if err := in.Refresh(); err != nil {
		t.Fatal(err)
	}
	wantDest(t, in, macA, dest("192.0.2.101", 4789))
}

// TestStopWhileChanging: while the file is replaced over and over and
// lookups run, every lookup answers from a complete map (the old or the
// new, never none), Stop returns promptly, and nothing reaches the host
// once it has returned.
func TestStopWhileChanging(t *testing.T) {
	in, host, path := startInstance(t, mapV1)
	var wg sync.WaitGroup
	done := make(chan struct{})
	var writes, lookups atomic.Int64
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			content := mapV1
			if i%2 == 1 {
				content = mapV2
			}
			tmp := fmt.Sprintf("%s.%d", path, i%4)
			if os.WriteFile(tmp, []byte(content), 0o644) == nil && os.Rename(tmp, path) == nil {
				writes.Add(1)
			}
			time.Sleep(time.Millisecond) // pace the changes, not a readiness wait
		}
	}()
	wantA := []encap.Dest{dest("192.0.2.1", 4789), dest("192.0.2.101", 4789)}
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			d, err := lookup(t, in, macA)
			if err != nil || !slices.Contains(wantA, d) {
				t.Errorf("Lookup(%s) while the file changes = %v, %v; want one of %v", macA, d, err, wantA)
				return
			}
			m, err := in.ResolveIP(context.Background(), 0, netip.MustParseAddr("10.1.0.1"))
			if err != nil || m != mac(t, macA) {
				t.Errorf("ResolveIP(10.1.0.1) while the file changes = %v, %v; want %s", m, err, macA)
				return
			}
			lookups.Add(1)
		}
	}()
	defer func() {
		if done != nil {
			close(done)
			wg.Wait()
		}
	}()
	// Until the file changed many times with lookups running across the
	// changes (the watcher waits for the file to settle, so changes this
	// fast are not each reloaded).
	for deadline := time.Now().Add(10 * time.Second); writes.Load() < 50 || lookups.Load() < 100; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: %d lookups, %d writes", lookups.Load(), writes.Load())
		}
	}
	if err := in.Refresh(); err != nil {
		t.Errorf("Refresh while the file changes: %v", err)
	}
	stopped := make(chan struct{})
	go func() {
		in.Stop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("Stop did not return while the file kept changing")
	}
	close(done)
	wg.Wait()
	done = nil
	host.take()
	// A change after Stop must reach nobody. A running watcher would
	// reload it within settle; four times that is how long "nothing
	// happens" is checked for, not a readiness wait.
	writeFile(t, path, strings.Replace(mapV1, "192.0.2.1\"", "192.0.2.77\"", 1))
	time.Sleep(4 * settle)
	if inv, deg, res := host.take(); len(inv) != 0 || len(deg) != 0 || res != 0 {
		t.Errorf("after Stop the host was told: invalidated %v, degraded %q, %d restores", inv, deg, res)
	}
}

// The files plugin never injects frames.
// Learn counts as touching the MAC's entry when it carries a destination,
// as Invalidate does: a reload installs new and moved entries directly.
// What it says of IPs and DHCP servers is kept in learned.
func (h *fakeHost) Learn(a search.Answer) {
	if a.Dest.IP.IsValid() {
		h.Invalidate(a.MAC)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.learned == nil {
		h.learned = map[ether.MAC]search.Answer{}
	}
	h.learned[a.MAC] = a
}

func (h *fakeHost) Announce(uint16, netip.Addr, ether.MAC) {}

// learnt returns the last answer learnt for m.
func (h *fakeHost) learnt(t *testing.T, m string) search.Answer {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.learned[mac(t, m)]
}
