// Package evpn is the EVPN search plugin (RFC 7432, and RFC 8365 for
// VXLAN): BGP is the control plane. The host becomes a VTEP of an EVPN
// fabric (FRR with the kernel's vxlan driver, a data-centre switch), with
// nothing of ours at its centre:
//
//   - it advertises a type-3 route (IMET, ingress replication) per VNI,
//     and a type-2 route (MAC/IP) per local VNIC, with the addresses its
//     guests are seen to use;
//   - it learns remote type-2 routes into the target table and the proxy's
//     answers (ARP suppression), type-3 routes into the flood list, and
//     resolves moves by MAC mobility sequence numbers (RFC 7432 §15).
//
// BGP is GoBGP, used as a library. One BGP speaker serves every overlay
// with the same speaker properties (ASN, router id, peers): a fabric sees
// one session per host, and overlays are told apart by route target.
package evpn

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"overlaynet/encap"
	"overlaynet/ether"
	"overlaynet/prop"
	"overlaynet/search"
)

// Property names.
const (
	PropASN      = "evpn/asn"
	PropPeerASN  = "evpn/peer_asn"
	PropRouterID = "evpn/router_id"
	PropPeers    = "evpn/peers"
	PropPort     = "evpn/port"
	PropRD       = "evpn/rd"
	PropRT       = "evpn/rt"
	PropHoldTime = "evpn/hold_time"
)

// Defaults: FRR's "datacenter" profile holds sessions 9 s; BGP's port.
const (
	DefaultHoldTime = 9
	DefaultPort     = 179
	// Auto is the value of evpn/rd and evpn/rt that derives them as FRR
	// does: RD router-id:VNI, RT ASN:VNI.
	Auto = "auto"
)

func init() {
	search.Register(&search.Plugin{
		Name:  "evpn",
		Mode:  search.Dynamic,
		Props: props,
		New:   newInstance,
	})
}

func props(encap.DestType) []prop.Desc {
	return []prop.Desc{
		{Name: PropASN, Type: prop.Uint, Perm: prop.ReadWrite, Required: true, HasRange: true, Min: 1, Max: 4294967295,
			Help: "this host's BGP autonomous system number"},
		{Name: PropPeerASN, Type: prop.Uint, Perm: prop.ReadWrite, HasRange: true, Min: 0, Max: 4294967295, Default: "0",
			Help: "the peers' AS; 0 (the default): evpn/asn, iBGP to route reflectors"},
		{Name: PropRouterID, Type: prop.IP, Perm: prop.ReadWrite,
			Help: "BGP router id (an IPv4 address); by default the listen address, when IPv4"},
		{Name: PropPeers, Type: prop.String, Perm: prop.ReadWrite, Required: true, Check: checkPeers,
			Help: "BGP peers (route reflectors or neighbours): addresses joined by '+', e.g. 192.0.2.10+192.0.2.11"},
		{Name: PropPort, Type: prop.Uint, Perm: prop.ReadWrite, Default: strconv.Itoa(DefaultPort), HasRange: true, Min: 1, Max: 65535,
			Help: "the peers' BGP port"},
		{Name: PropRD, Type: prop.String, Perm: prop.ReadWrite, Default: Auto, Check: checkRD,
			Help: "route distinguisher: auto (router-id:VNI, as FRR) or ASN:N or IP:N"},
		{Name: PropRT, Type: prop.String, Perm: prop.ReadWrite, Default: Auto, Check: checkRT,
			Help: "route target, imported and exported: auto (ASN:VNI, as FRR) or ASN:N"},
		{Name: PropHoldTime, Type: prop.Uint, Perm: prop.ReadWrite, Default: strconv.Itoa(DefaultHoldTime), HasRange: true, Min: 3, Max: 65535,
			Help: "BGP hold time in seconds (keepalives every third of it)"},
	}
}

// parsePeers splits evpn/peers.
func parsePeers(v string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, s := range strings.Split(v, "+") {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("peer %q is not an IP address (join several with '+')", s)
		}
		out = append(out, a.Unmap())
	}
	return out, nil
}

func checkPeers(v string) error { _, err := parsePeers(v); return err }

// parseTarget parses ASN:N (two-octet AS, 32-bit number; or four-octet
// AS, 16-bit number) as a route target's parts.
func parseTarget(v string) (asn uint32, n uint32, err error) {
	a, b, ok := strings.Cut(v, ":")
	x, e1 := strconv.ParseUint(a, 10, 32)
	y, e2 := strconv.ParseUint(b, 10, 32)
	if !ok || e1 != nil || e2 != nil {
		return 0, 0, fmt.Errorf("%q is not ASN:N", v)
	}
	return uint32(x), uint32(y), nil
}

func checkRT(v string) error {
	if v == Auto {
		return nil
	}
	_, _, err := parseTarget(v)
	return err
}

func checkRD(v string) error {
	if v == Auto {
		return nil
	}
	a, b, ok := strings.Cut(v, ":")
	if _, err := strconv.ParseUint(b, 10, 32); !ok || err != nil {
		return fmt.Errorf("%q is not ASN:N or IP:N", v)
	}
	if _, err := netip.ParseAddr(a); err == nil {
		return nil
	}
	if _, err := strconv.ParseUint(a, 10, 32); err != nil {
		return fmt.Errorf("%q is not ASN:N or IP:N", v)
	}
	return nil
}

// config is what an overlay's instance is made of.
type config struct {
	speaker speakerKey
	vni     uint32
	rd      string // as GoBGP parses it
	rt      [2]uint32
	port    uint16 // the VXLAN port of remote VTEPs: the overlay's own
}

// instance serves one overlay.
type instance struct {
	cfg  config
	host search.Host
	log  logger
	sp   *speaker

	mu sync.Mutex
	// remote are the type-2 routes heard, by MAC, then by origin (RD):
	// the best is the one with the highest mobility sequence number.
	remote map[ether.MAC]map[string]macRoute
	// ips are the addresses type-2 routes carry, for ARP and NDP.
	ips map[netip.Addr]ether.MAC
	// imet are the VTEPs of type-3 routes, by origin: the flood list.
	imet map[string]netip.Addr
	// local are this host's VNICs (advertised), with their sequence
	// numbers, and the addresses seen for them.
	local map[ether.MAC]*localVNIC
	// installed are the addresses given the engine for each MAC.
	installed map[ether.MAC][]netip.Addr
	// stopped: events still on their way from the speaker are dropped.
	stopped bool
}

type macRoute struct {
	vtep netip.Addr
	seq  uint32
	ips  []netip.Addr
}

type localVNIC struct {
	vlan uint16
	seq  uint32
	ips  map[netip.Addr]bool
	// bumps are when the sequence number was raised to win the MAC back
	// from a remote route: at most maxBumps in bumpWindow, as RFC 7432
	// §15.1's duplicate detection (N=5 moves in M=180 s), so that one MAC
	// on two hosts does not churn the fabric forever.
	bumps []time.Time
}

const (
	maxBumps   = 5
	bumpWindow = 180 * time.Second
)

// logger is the part of slog the plugin uses.
type logger interface {
	Info(msg string, args ...any)
	Warn(msg string, args ...any)
	Debug(msg string, args ...any)
}

func newInstance(cfg search.Config) (search.Instance, error) {
	if cfg.Dest != encap.DestIP|encap.DestPort {
		return nil, fmt.Errorf("the evpn plugin needs a UDP encapsulation (vxlan): EVPN next hops are VTEP addresses on the VXLAN port")
	}
	p := cfg.Props
	listen := p.IP("vxlan/listen_ip")
	port := uint16(p.Uint("vxlan/listen_port"))
	if !listen.IsValid() {
		return nil, fmt.Errorf("the evpn plugin carries VXLAN only (RFC 8365, as FRR and the kernel speak it): create the overlay with -e vxlan")
	}
	if listen.IsUnspecified() {
		return nil, fmt.Errorf("the evpn plugin advertises the listen address as this VTEP's: give a specific vxlan/listen_ip, not %s", listen)
	}
	if ns := p.Get("underlay_netns"); ns != "" {
		// GoBGP dials from the process's namespace.
		return nil, fmt.Errorf("the evpn plugin makes its BGP sessions from overlayd's own network namespace: underlay_netns %s is not supported with it", ns)
	}
	rid := p.IP(PropRouterID)
	if !rid.IsValid() {
		if !listen.Is4() {
			return nil, fmt.Errorf("%s: the listen address %s is not IPv4: give a router id", PropRouterID, listen)
		}
		rid = listen
	}
	if !rid.Is4() {
		return nil, fmt.Errorf("%s %s: a BGP router id is an IPv4 address", PropRouterID, rid)
	}
	asn := uint32(p.Uint(PropASN))
	peerASN := uint32(p.Uint(PropPeerASN))
	if peerASN == 0 {
		peerASN = asn
	}
	peers, err := parsePeers(p.Get(PropPeers))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", PropPeers, err)
	}
	c := config{vni: cfg.VNetID, port: port,
		speaker: speakerKey{asn: asn, peerASN: peerASN, routerID: rid, local: listen, peers: joinPeers(peers),
			port: uint16(p.Uint(PropPort)), hold: uint32(p.Uint(PropHoldTime))}}
	switch rd := p.Get(PropRD); rd {
	case Auto:
		c.rd = fmt.Sprintf("%s:%d", rid, cfg.VNetID&0xffff)
	default:
		c.rd = rd
	}
	switch rt := p.Get(PropRT); rt {
	case Auto:
		if asn > 0xffff {
			return nil, fmt.Errorf("%s auto is ASN:VNI, which a four-octet ASN (%d) cannot carry with a 24-bit VNI: give it", PropRT, asn)
		}
		c.rt = [2]uint32{asn, cfg.VNetID}
	default:
		a, n, err := parseTarget(rt)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", PropRT, err)
		}
		if a > 0xffff && n > 0xffff {
			return nil, fmt.Errorf("%s %s: with a four-octet ASN the number is 16 bits (at most 65535)", PropRT, rt)
		}
		c.rt = [2]uint32{a, n}
	}
	return &instance{cfg: c, host: cfg.Host, log: cfg.Log,
		remote: map[ether.MAC]map[string]macRoute{}, ips: map[netip.Addr]ether.MAC{},
		imet: map[string]netip.Addr{}, local: map[ether.MAC]*localVNIC{}, installed: map[ether.MAC][]netip.Addr{}}, nil
}

// Start joins (or starts) the speaker and advertises the VNI's type-3
// route. Sessions come up in the background: until one does, the overlay
// is DEGRADED, naming the peers.
func (in *instance) Start() error {
	sp, err := acquire(in.cfg.speaker, in.log)
	if err != nil {
		return err
	}
	in.sp = sp
	if err := sp.register(in); err != nil {
		sp.release(in)
		return err
	}
	return nil
}

// Stop withdraws the overlay's routes and leaves the speaker.
func (in *instance) Stop() {
	in.mu.Lock()
	in.stopped = true
	in.mu.Unlock()
	if in.sp != nil {
		in.sp.release(in)
	}
}

// Lookup implements search.DynamicInstance from the routes heard.
func (in *instance) Lookup(_ context.Context, _ uint16, mac ether.MAC) (encap.Dest, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if r, ok := in.best(mac); ok {
		return encap.Dest{IP: r.vtep, Port: in.cfg.port}, nil
	}
	return encap.Dest{}, search.ErrNotFound
}

// ResolveIP implements search.IPResolver from the type-2 routes' IPs:
// ARP suppression.
func (in *instance) ResolveIP(_ context.Context, _ uint16, ip netip.Addr) (ether.MAC, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if mac, ok := in.ips[ip.Unmap()]; ok {
		return mac, nil
	}
	return ether.MAC{}, search.ErrNotFound
}

// Preload implements search.Preloader: what was heard before the data
// path existed.
func (in *instance) Preload() {
	in.mu.Lock()
	defer in.mu.Unlock()
	for mac := range in.remote {
		in.installLocked(mac)
	}
	// An empty list is not known to be empty yet: a kernel device taken
	// over keeps its flood entries until type-3 routes say otherwise.
	if len(in.imet) > 0 {
		in.floodLocked()
	}
}

// GivesFloodList implements search.FloodInstance: type-3 routes make one.
func (in *instance) GivesFloodList() {}

// VNICUp implements search.VNICWatcher: a type-2 route for the VNIC.
func (in *instance) VNICUp(vlan uint16, mac ether.MAC) {
	in.mu.Lock()
	l := &localVNIC{vlan: vlan, ips: map[netip.Addr]bool{}}
	// A MAC heard from elsewhere moved here: a higher sequence number
	// wins it back (RFC 7432 §15.1).
	if r, ok := in.best(mac); ok {
		l.seq = r.seq + 1
	}
	in.local[mac] = l
	in.mu.Unlock()
	in.sp.advertiseMAC(in, mac, l.seq, nil, true)
}

// maxGuestAddresses bounds the addresses advertised for one VNIC: a guest
// that asks from ever more addresses does not flood the fabric.
const maxGuestAddresses = 16

// GuestAddress implements search.AddressWatcher: a type-2 route with the
// MAC and the address, once per address.
func (in *instance) GuestAddress(vlan uint16, mac ether.MAC, ip netip.Addr) {
	in.mu.Lock()
	l := in.local[mac]
	if l == nil || l.vlan != vlan || l.ips[ip] || len(l.ips) >= maxGuestAddresses {
		in.mu.Unlock()
		return
	}
	l.ips[ip] = true
	seq := l.seq
	in.mu.Unlock()
	in.sp.advertiseMAC(in, mac, seq, []netip.Addr{ip}, false)
	in.mu.Lock()
	gone := in.local[mac] != l
	in.mu.Unlock()
	if gone {
		// VNICDown ran meanwhile and may have withdrawn before this
		// was advertised.
		in.sp.withdrawMAC(in, mac, &localVNIC{seq: seq, ips: map[netip.Addr]bool{ip: true}})
	}
}

// VNICDown implements search.VNICWatcher: the route is withdrawn.
func (in *instance) VNICDown(vlan uint16, mac ether.MAC) {
	in.mu.Lock()
	l := in.local[mac]
	if l == nil || l.vlan != vlan {
		in.mu.Unlock()
		return
	}
	delete(in.local, mac)
	// A remote route for the MAC, held back while it was local, counts
	// now.
	in.installLocked(mac)
	in.mu.Unlock()
	if l != nil {
		in.sp.withdrawMAC(in, mac, l)
	}
}

// best is mac's winning remote route: the highest sequence number, then
// the lowest VTEP address (RFC 7432 §15.1). Called with in.mu.
func (in *instance) best(mac ether.MAC) (macRoute, bool) {
	var best macRoute
	found := false
	for _, r := range in.remote[mac] {
		if !found || r.seq > best.seq || r.seq == best.seq && r.vtep.Less(best.vtep) {
			best, found = r, true
		}
	}
	// A VTEP sends the MAC alone and the MAC with each address, each a
	// route: the winner's addresses are all of them.
	best.ips = nil
	for _, r := range in.remote[mac] {
		if r.vtep == best.vtep && r.seq == best.seq {
			best.ips = append(best.ips, r.ips...)
		}
	}
	return best, found
}

// heardMAC records a remote type-2 route (withdrawn when del).
func (in *instance) heardMAC(origin string, mac ether.MAC, r macRoute, del bool) {
	in.mu.Lock()
	if in.stopped {
		in.mu.Unlock()
		return
	}
	rs := in.remote[mac]
	if del {
		delete(rs, origin)
		if len(rs) == 0 {
			delete(in.remote, mac)
		}
	} else {
		if rs == nil {
			rs = map[string]macRoute{}
			in.remote[mac] = rs
		}
		rs[origin] = r
	}
	in.installLocked(mac)
	// A local VNIC's MAC heard from afar with as high a sequence number
	// (a stale copy, or a duplicate): the VNIC is here, so it is
	// advertised again with the next number, and wins (RFC 7432 §15.1).
	l := in.local[mac]
	var seq uint32
	bump := false
	if b, ok := in.best(mac); l != nil && ok && b.seq >= l.seq {
		now := time.Now()
		l.bumps = slices.DeleteFunc(l.bumps, func(t time.Time) bool { return now.Sub(t) > bumpWindow })
		if len(l.bumps) < maxBumps {
			l.bumps = append(l.bumps, now)
			l.seq = b.seq + 1
			seq, bump = l.seq, true
		} else if len(l.bumps) == maxBumps {
			l.bumps = append(l.bumps, now)
			in.log.Warn("evpn: duplicate MAC: another VTEP keeps advertising a local VNIC's MAC; not contesting it further", "mac", ether.Long(mac), "vtep", b.vtep.String())
		}
	}
	var ips []netip.Addr
	if bump {
		for ip := range l.ips {
			ips = append(ips, ip)
		}
	}
	in.mu.Unlock()
	if bump {
		in.sp.advertiseMAC(in, mac, seq, ips, true)
	}
}

// installLocked gives the engine mac's best route, or takes it back.
// Called with in.mu.
func (in *instance) installLocked(mac ether.MAC) {
	for _, ip := range in.installed[mac] {
		if in.ips[ip] == mac {
			delete(in.ips, ip)
		}
	}
	delete(in.installed, mac)
	if _, local := in.local[mac]; local {
		return // ours: the data path delivers it
	}
	r, ok := in.best(mac)
	if !ok {
		in.host.Invalidate(mac)
		return
	}
	for _, ip := range r.ips {
		in.ips[ip] = mac
	}
	in.installed[mac] = r.ips
	in.host.Learn(search.Answer{MAC: mac, Dest: encap.Dest{IP: r.vtep, Port: in.cfg.port}, IPs: r.ips})
}

// heardIMET records a remote type-3 route, and sets the flood list.
func (in *instance) heardIMET(origin string, vtep netip.Addr, del bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.stopped {
		return
	}
	if del {
		delete(in.imet, origin)
	} else {
		in.imet[origin] = vtep
	}
	in.floodLocked()
}

// floodLocked hands the data path the flood list. Called with in.mu.
func (in *instance) floodLocked() {
	seen := map[netip.Addr]bool{}
	var dests []encap.Dest
	for _, v := range in.imet {
		if !seen[v] {
			seen[v] = true
			dests = append(dests, encap.Dest{IP: v, Port: in.cfg.port})
		}
	}
	if fh, ok := in.host.(search.FloodHost); ok {
		fh.SetFlood(dests)
	}
}

// sessions updates the overlay's status from the speaker's sessions:
// DEGRADED while none is up, naming each peer and its state.
func (in *instance) sessions(states map[netip.Addr]string) {
	in.mu.Lock()
	stopped := in.stopped
	in.mu.Unlock()
	if stopped {
		return
	}
	var down []string
	up := false
	for peer, st := range states {
		if st == "established" {
			up = true
		} else {
			down = append(down, fmt.Sprintf("%s (%s)", peer, st))
		}
	}
	if up {
		in.host.Restore()
		return
	}
	in.host.Degrade(fmt.Sprintf("evpn: no BGP session established with peer %s", strings.Join(sortStrings(down), ", ")))
}
