package adm

import (
	"fmt"
	"net/netip"
	"sort"
	"sync"

	"overlaynet/datapath"
	"overlaynet/encap"
)

// fakeDataPath is an in-memory datapath.DataPath for control-plane tests.
// It records what the manager asks of it and enforces nothing, except that
// it refuses to "bind" the listen address failListen.
type fakeDataPath struct {
	failListen netip.AddrPort

	mu       sync.Mutex
	overlays map[*fakeOverlay]bool
}

func newFakeDataPath(failListen netip.AddrPort) *fakeDataPath {
	return &fakeDataPath{failListen: failListen, overlays: map[*fakeOverlay]bool{}}
}

func (d *fakeDataPath) bindError(a netip.AddrPort) error {
	return fmt.Errorf("listen udp %s: bind: address already in use", a)
}

func (d *fakeDataPath) CreateOverlay(cfg datapath.OverlayConfig) (datapath.Overlay, error) {
	if cfg.Listen == d.failListen {
		return nil, d.bindError(cfg.Listen)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	o := &fakeOverlay{dp: d, cfg: cfg, vnics: map[string]datapath.VNICConfig{}}
	d.overlays[o] = true
	return o, nil
}

func (d *fakeDataPath) Listeners() []datapath.Listener {
	d.mu.Lock()
	defer d.mu.Unlock()
	byAddr := map[netip.AddrPort][]string{}
	for o := range d.overlays {
		byAddr[o.cfg.Listen] = append(byAddr[o.cfg.Listen], o.cfg.Name)
	}
	var out []datapath.Listener
	for a, names := range byAddr {
		sort.Strings(names)
		out = append(out, datapath.Listener{Addr: a, Overlays: names,
			Stats: new(datapath.Counters).Snapshot(datapath.ListenerCounters...)})
	}
	return out
}

func (d *fakeDataPath) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.overlays = map[*fakeOverlay]bool{}
	return nil
}

// vnicCount is how many VNICs the data path carries, over all overlays.
func (d *fakeDataPath) vnicCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for o := range d.overlays {
		n += len(o.vnics)
	}
	return n
}

// overlayCount is how many overlays the data path carries.
func (d *fakeDataPath) overlayCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.overlays)
}

type fakeOverlay struct {
	dp      *fakeDataPath
	cfg     datapath.OverlayConfig
	vnics   map[string]datapath.VNICConfig
	targets map[datapath.MAC]datapath.Target
}

func (o *fakeOverlay) Update(cfg datapath.OverlayConfig) error {
	if cfg.Listen == o.dp.failListen {
		return o.dp.bindError(cfg.Listen)
	}
	o.dp.mu.Lock()
	defer o.dp.mu.Unlock()
	o.cfg = cfg
	return nil
}

func (o *fakeOverlay) AddVNIC(cfg datapath.VNICConfig) error {
	o.dp.mu.Lock()
	defer o.dp.mu.Unlock()
	o.vnics[cfg.Name] = cfg
	return nil
}

func (o *fakeOverlay) SetNoSpoof(name string, on bool) error {
	o.dp.mu.Lock()
	defer o.dp.mu.Unlock()
	v, ok := o.vnics[name]
	if !ok {
		return fmt.Errorf("fake data path: no VNIC %s", name)
	}
	v.NoSpoof = on
	o.vnics[name] = v
	return nil
}

func (o *fakeOverlay) RemoveVNIC(name string) error {
	o.dp.mu.Lock()
	defer o.dp.mu.Unlock()
	delete(o.vnics, name)
	return nil
}

func (o *fakeOverlay) Stats() datapath.Stats {
	return new(datapath.Counters).Snapshot(datapath.OverlayCounters...)
}

func (o *fakeOverlay) Close() error {
	o.dp.mu.Lock()
	defer o.dp.mu.Unlock()
	delete(o.dp.overlays, o)
	return nil
}

// The target table of the fake: a plain map, enough for modify-overlay
// and show-overlay -t.

func (o *fakeOverlay) SetTarget(mac datapath.MAC, dest encap.Dest) {
	o.dp.mu.Lock()
	defer o.dp.mu.Unlock()
	o.targetMap()[mac] = datapath.Target{MAC: mac, Dest: dest}
}

func (o *fakeOverlay) DropTarget(mac datapath.MAC, admin bool) {
	o.dp.mu.Lock()
	defer o.dp.mu.Unlock()
	if admin {
		o.targetMap()[mac] = datapath.Target{MAC: mac, State: datapath.TargetDrop}
	}
}

func (o *fakeOverlay) RemoveTarget(mac datapath.MAC) {
	o.dp.mu.Lock()
	defer o.dp.mu.Unlock()
	delete(o.targetMap(), mac)
}

func (o *fakeOverlay) FlushTargets() {
	o.dp.mu.Lock()
	defer o.dp.mu.Unlock()
	o.targets = nil
}

func (o *fakeOverlay) Targets() []datapath.Target {
	o.dp.mu.Lock()
	defer o.dp.mu.Unlock()
	var out []datapath.Target
	for _, t := range o.targets {
		out = append(out, t)
	}
	return out
}

func (o *fakeOverlay) targetMap() map[datapath.MAC]datapath.Target {
	if o.targets == nil {
		o.targets = map[datapath.MAC]datapath.Target{}
	}
	return o.targets
}

func (o *fakeOverlay) Inject(vlan uint16, frame []byte) {}
func (o *fakeOverlay) Resend(vlan uint16, frame []byte) {}

func (o *fakeOverlay) SetNeighbor(netip.Addr, datapath.MAC) {}

func (o *fakeOverlay) SetDHCPRedirect(client, server datapath.MAC) {}
