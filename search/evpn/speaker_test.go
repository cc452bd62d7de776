package evpn

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"

	"overlaynet/encap"
	"overlaynet/ether"
	"overlaynet/prop"
	"overlaynet/search"
)

// lockedHost is a fakeHost safe for the speaker's goroutines.
type lockedHost struct {
	mu sync.Mutex
	fakeHost
}

func (h *lockedHost) Invalidate(m ether.MAC) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fakeHost.Invalidate(m)
}
func (h *lockedHost) Learn(a search.Answer) { h.mu.Lock(); defer h.mu.Unlock(); h.fakeHost.Learn(a) }
func (h *lockedHost) Degrade(r string)      { h.mu.Lock(); defer h.mu.Unlock(); h.fakeHost.Degrade(r) }
func (h *lockedHost) Restore()              { h.mu.Lock(); defer h.mu.Unlock(); h.fakeHost.Restore() }
func (h *lockedHost) SetFlood(d []encap.Dest) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.fakeHost.SetFlood(d)
}

func (h *lockedHost) state(f func(*fakeHost) bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return f(&h.fakeHost)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("not within 20 s: %s", what)
}

// freePort returns a TCP port free on 127.0.0.1 just now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// reflector starts a GoBGP route reflector on 127.0.0.1:port for
// clients.
func reflector(t *testing.T, port int, clients ...string) *server.BgpServer {
	t.Helper()
	s := server.NewBgpServer(server.LoggerOption(gobgpLogger{slog.New(slog.DiscardHandler)}))
	go s.Serve()
	ctx := context.Background()
	if err := s.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{Asn: 65000, RouterId: "127.0.0.1",
		ListenPort: int32(port), ListenAddresses: []string{"127.0.0.1"}}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range clients {
		err := s.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
			Conf:           &api.PeerConf{NeighborAddress: c, PeerAsn: 65000},
			RouteReflector: &api.RouteReflector{RouteReflectorClient: true, RouteReflectorClusterId: "127.0.0.1"},
			Transport:      &api.Transport{PassiveMode: true},
			AfiSafis:       []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: evpnFamily, Enabled: true}}},
		}})
		if err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// instanceAt is an evpn instance of VNI 42 whose VTEP is local, peering
// with 127.0.0.1:port.
func instanceAt(t *testing.T, local string, port int) (*instance, *lockedHost) {
	t.Helper()
	s := prop.NewSet([]prop.Desc{{Name: "vxlan/listen_ip", Type: prop.IP}, {Name: "vxlan/listen_port", Type: prop.Uint, Default: "4789"}}, props(0))
	for _, kv := range [][2]string{{"vxlan/listen_ip", local}, {PropASN, "65000"}, {PropPeers, "127.0.0.1"}, {PropPort, fmt.Sprint(port)}, {PropHoldTime, "3"}} {
		if err := s.Set(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	h := &lockedHost{fakeHost: fakeHost{targets: map[ether.MAC]encap.Dest{}}}
	in, err := newInstance(search.Config{Props: s, Dest: encap.DestIP | encap.DestPort, VNetID: 42, Host: h, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Stop)
	return in.(*instance), h
}

// TestSpeakers: two hosts' speakers through a GoBGP route reflector on
// loopback. A VNIC on one becomes a target on the other, and its type-3
// route the other's flood list; the VNIC deleted, the target goes; the
// reflector gone, both are DEGRADED naming it.
func TestSpeakers(t *testing.T) {
	port := freePort(t)
	rr := reflector(t, port, "127.0.0.2", "127.0.0.3")
	a, ha := instanceAt(t, "127.0.0.2", port)
	b, hb := instanceAt(t, "127.0.0.3", port)
	for _, h := range []*lockedHost{ha, hb} {
		waitUntil(t, "a session", func() bool { return h.state(func(f *fakeHost) bool { return f.degraded == "" }) })
	}
	mac := ether.MAC{2, 8, 32, 0, 0, 0xa}
	a.VNICUp(0, mac)
	want := encap.Dest{IP: netip.MustParseAddr("127.0.0.2"), Port: 4789}
	waitUntil(t, "b learns a's VNIC", func() bool { return hb.state(func(f *fakeHost) bool { return f.targets[mac] == want }) })
	waitUntil(t, "b floods to a", func() bool {
		return hb.state(func(f *fakeHost) bool { return len(f.flood) == 1 && f.flood[0] == want })
	})
	if d, err := b.Lookup(context.Background(), 0, mac); err != nil || d != want {
		t.Errorf("b's Lookup: %v %v", d, err)
	}
	a.VNICDown(0, mac)
	waitUntil(t, "b forgets a's VNIC", func() bool { return hb.state(func(f *fakeHost) bool { _, ok := f.targets[mac]; return !ok }) })

	rr.Stop()
	for _, h := range []*lockedHost{ha, hb} {
		waitUntil(t, "DEGRADED naming the reflector", func() bool {
			return h.state(func(f *fakeHost) bool { return strings.Contains(f.degraded, "127.0.0.1") })
		})
	}
}
