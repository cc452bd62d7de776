package evpn

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/server"

	"overlaynet/ether"
)

// speakerKey is what overlays share a BGP speaker by.
type speakerKey struct {
	asn, peerASN uint32
	routerID     netip.Addr
	local        netip.Addr // the source address of sessions
	peers        string
	port         uint16
	hold         uint32
}

func joinPeers(ps []netip.Addr) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, "+")
}

// speaker is one GoBGP server and its sessions, shared by the overlays of
// one speakerKey. It does not listen: it connects to its peers (route
// reflectors accept that as they accept any client).
type speaker struct {
	key  speakerKey
	bgp  *server.BgpServer
	log  logger
	stop context.CancelFunc

	mu     sync.Mutex
	refs   int
	byRT   map[[2]uint32]*instance
	states map[netip.Addr]string
}

var (
	speakersMu sync.Mutex
	// speakers are found by router id: two speakers with one router id
	// (and so one source address) would collide at their peers.
	speakers = map[netip.Addr]*speaker{}
)

var evpnFamily = &api.Family{Afi: api.Family_AFI_L2VPN, Safi: api.Family_SAFI_EVPN}

// acquire returns the speaker for key, starting it if none runs.
func acquire(key speakerKey, log logger) (*speaker, error) {
	speakersMu.Lock()
	defer speakersMu.Unlock()
	if sp := speakers[key.routerID]; sp != nil {
		if sp.key != key {
			o := sp.key
			return nil, fmt.Errorf("another evpn overlay's BGP speaker has router id %s with other settings (AS %d, peers %s, peer AS %d, port %d, hold time %d, VTEP %s): evpn overlays sharing a router id share one speaker and must agree",
				key.routerID, o.asn, o.peers, o.peerASN, o.port, o.hold, o.local)
		}
		sp.mu.Lock()
		sp.refs++
		sp.mu.Unlock()
		return sp, nil
	}
	sp := &speaker{key: key, log: log, refs: 1, byRT: map[[2]uint32]*instance{}, states: map[netip.Addr]string{}}
	peers, _ := parsePeers(key.peers)
	for _, p := range peers {
		sp.states[p] = "idle" // before any event can write it
	}
	s := server.NewBgpServer(server.LoggerOption(gobgpLogger{log}))
	go s.Serve()
	sp.bgp = s
	ctx := context.Background()
	if err := s.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: key.asn, RouterId: key.routerID.String(), ListenPort: -1}}); err != nil {
		s.Stop()
		return nil, fmt.Errorf("start BGP (AS %d, router id %s): %w", key.asn, key.routerID, err)
	}
	wctx, cancel := context.WithCancel(ctx)
	sp.stop = cancel
	err := s.WatchEvent(wctx, &api.WatchEventRequest{
		Peer:  &api.WatchEventRequest_Peer{},
		Table: &api.WatchEventRequest_Table{Filters: []*api.WatchEventRequest_Table_Filter{{Type: api.WatchEventRequest_Table_Filter_BEST, Init: true}}},
	}, sp.event)
	if err != nil {
		cancel()
		s.Stop()
		return nil, fmt.Errorf("watch BGP: %w", err)
	}
	for _, p := range peers {
		keep := key.hold / 3
		peer := &api.Peer{
			Conf:      &api.PeerConf{NeighborAddress: p.String(), PeerAsn: key.peerASN},
			Transport: &api.Transport{LocalAddress: key.local.String(), RemotePort: uint32(key.port)},
			Timers: &api.Timers{Config: &api.TimersConfig{HoldTime: uint64(key.hold), KeepaliveInterval: uint64(keep),
				ConnectRetry: 1, IdleHoldTimeAfterReset: 1}},
			AfiSafis: []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: evpnFamily, Enabled: true}}},
		}
		if err := s.AddPeer(ctx, &api.AddPeerRequest{Peer: peer}); err != nil {
			cancel()
			s.Stop()
			return nil, fmt.Errorf("BGP peer %s: %w", p, err)
		}
	}
	speakers[key.routerID] = sp
	log.Info("BGP speaker started", "asn", key.asn, "router_id", key.routerID.String(), "peers", key.peers)
	return sp, nil
}

// release drops an overlay's routes and, with the last, the speaker.
func (sp *speaker) release(in *instance) {
	// An instance replaced by its overlay's next one (a property changed)
	// with the same RD leaves its routes: the next one's are the same
	// NLRIs, and withdrawing them would withdraw the next one's.
	sp.mu.Lock()
	replaced := false
	for _, o := range sp.byRT {
		if o != in && o.host == in.host && o.cfg.rd == in.cfg.rd {
			replaced = true
		}
	}
	sp.mu.Unlock()
	if !replaced {
		sp.withdrawAll(in)
	}
	speakersMu.Lock()
	defer speakersMu.Unlock()
	sp.mu.Lock()
	if sp.byRT[in.cfg.rt] == in {
		delete(sp.byRT, in.cfg.rt)
	}
	sp.refs--
	last := sp.refs == 0
	sp.mu.Unlock()
	if !last {
		return
	}
	delete(speakers, sp.key.routerID)
	sp.stop()
	sp.bgp.Stop()
	sp.log.Info("BGP speaker stopped", "router_id", sp.key.routerID.String())
}

// register makes the speaker route in's RT to it, and advertises the
// VNI's type-3 route.
func (sp *speaker) register(in *instance) error {
	sp.mu.Lock()
	for rt, o := range sp.byRT {
		if o == in || o.host == in.host {
			continue // its overlay's previous instance: replaced
		}
		if rt == in.cfg.rt {
			sp.mu.Unlock()
			return fmt.Errorf("route target %d:%d is already another overlay's on this BGP speaker: give evpn/rt", in.cfg.rt[0], in.cfg.rt[1])
		}
		if o.cfg.rd == in.cfg.rd {
			sp.mu.Unlock()
			return fmt.Errorf("route distinguisher %s is already vnetid %d's on this BGP speaker: give evpn/rd", in.cfg.rd, o.cfg.vni)
		}
	}
	sp.byRT[in.cfg.rt] = in
	// Under sp.mu, as event does: a snapshot taken here cannot overtake
	// a newer state reported there.
	in.sessions(sp.states)
	sp.mu.Unlock()
	path, err := sp.imetPath(in, false)
	if err != nil {
		return err
	}
	if _, err := sp.bgp.AddPath(context.Background(), &api.AddPathRequest{Path: path}); err != nil {
		return fmt.Errorf("advertise the type-3 route of VNI %d: %w", in.cfg.vni, err)
	}
	// The routes heard before this overlay registered.
	return sp.bgp.ListPath(context.Background(), &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: evpnFamily},
		func(d *api.Destination) {
			for _, p := range d.Paths {
				if p.Best {
					sp.path(p)
				}
			}
		})
}

// event handles GoBGP's peer and best-path events.
func (sp *speaker) event(r *api.WatchEventResponse) {
	if p := r.GetPeer(); p != nil && p.Peer != nil && p.Peer.State != nil {
		addr, err := netip.ParseAddr(p.Peer.State.NeighborAddress)
		if err != nil {
			return
		}
		st := strings.ToLower(strings.TrimPrefix(p.Peer.State.SessionState.String(), "SESSION_STATE_"))
		sp.mu.Lock()
		old := sp.states[addr.Unmap()]
		sp.states[addr.Unmap()] = st
		for _, in := range sp.byRT {
			in.sessions(sp.states)
		}
		sp.mu.Unlock()
		if old != st {
			sp.log.Info("BGP session", "peer", addr.String(), "state", st, "was", old)
		}
		return
	}
	if t := r.GetTable(); t != nil {
		for _, p := range t.Paths {
			sp.path(p)
		}
	}
}

// path hands one EVPN path (a best path, or its withdrawal) to the
// overlay whose route target it carries. Our own paths are skipped.
func (sp *speaker) path(p *api.Path) {
	if p.Family == nil || p.Family.Afi != evpnFamily.Afi || p.Family.Safi != evpnFamily.Safi {
		return
	}
	nlri, err := apiutil.UnmarshalNLRI(bgp.RF_EVPN, p.Nlri)
	if err != nil {
		return
	}
	attrs, err := apiutil.UnmarshalPathAttributes(p.Pattrs)
	if err != nil {
		return
	}
	var nh netip.Addr
	var rts [][2]uint32
	var seq uint32
	for _, a := range attrs {
		switch a := a.(type) {
		case *bgp.PathAttributeMpReachNLRI:
			nh, _ = netip.AddrFromSlice(a.Nexthop)
		case *bgp.PathAttributeNextHop:
			nh, _ = netip.AddrFromSlice(a.Value)
		case *bgp.PathAttributeExtendedCommunities:
			for _, c := range a.Value {
				switch c := c.(type) {
				case *bgp.TwoOctetAsSpecificExtended:
					if c.SubType == bgp.EC_SUBTYPE_ROUTE_TARGET {
						rts = append(rts, [2]uint32{uint32(c.AS), c.LocalAdmin})
					}
				case *bgp.FourOctetAsSpecificExtended:
					if c.SubType == bgp.EC_SUBTYPE_ROUTE_TARGET {
						rts = append(rts, [2]uint32{c.AS, uint32(c.LocalAdmin)})
					}
				case *bgp.MacMobilityExtended:
					seq = c.Sequence
				}
			}
		}
	}
	nh = nh.Unmap()
	sp.log.Debug("evpn path", "nlri", nlri, "nexthop", nh, "rts", rts, "withdraw", p.IsWithdraw) // formatted only when debug logs are on
	if nh == sp.key.local || nh == sp.key.routerID {
		return // ours, reflected or local
	}
	e, ok := nlri.(*bgp.EVPNNLRI)
	if !ok {
		return
	}
	sp.mu.Lock()
	var in *instance
	for _, rt := range rts {
		if in = sp.byRT[rt]; in != nil {
			break
		}
	}
	sp.mu.Unlock()
	if in == nil {
		return
	}
	switch r := e.RouteTypeData.(type) {
	case *bgp.EVPNMacIPAdvertisementRoute:
		if len(r.Labels) > 0 && r.Labels[0] != in.cfg.vni {
			return // the RT's, but another VNI's (a shared RT)
		}
		hw, err := net.ParseMAC(r.MacAddress.String())
		if err != nil || len(hw) != 6 {
			return
		}
		mr := macRoute{vtep: nh, seq: seq}
		if ip, ok := netip.AddrFromSlice(r.IPAddress); ok && r.IPAddressLength > 0 {
			mr.ips = []netip.Addr{ip.Unmap()}
		}
		// One origin (RD) may send the MAC alone and the MAC with each
		// address: each is its own route, kept apart by the address.
		origin := r.RD.String() + "/" + ipKey(mr.ips)
		in.heardMAC(origin, ether.MAC(hw), mr, p.IsWithdraw)
	case *bgp.EVPNMulticastEthernetTagRoute:
		in.heardIMET(r.RD.String(), nh, p.IsWithdraw)
	}
}

func ipKey(ips []netip.Addr) string {
	if len(ips) == 0 {
		return ""
	}
	return ips[0].String()
}

// rd is in's route distinguisher.
func (in *instance) routeDistinguisher() (bgp.RouteDistinguisherInterface, error) {
	rd, err := bgp.ParseRouteDistinguisher(in.cfg.rd)
	if err != nil {
		return nil, fmt.Errorf("route distinguisher %s: %w", in.cfg.rd, err)
	}
	return rd, nil
}

// attrs are the attributes of in's routes: next hop, RT, VXLAN.
func (sp *speaker) attrs(in *instance, nlri bgp.AddrPrefixInterface, extra ...bgp.ExtendedCommunityInterface) []bgp.PathAttributeInterface {
	var rt bgp.ExtendedCommunityInterface
	if in.cfg.rt[0] <= 0xffff {
		rt = bgp.NewTwoOctetAsSpecificExtended(bgp.EC_SUBTYPE_ROUTE_TARGET, uint16(in.cfg.rt[0]), in.cfg.rt[1], true)
	} else {
		rt = bgp.NewFourOctetAsSpecificExtended(bgp.EC_SUBTYPE_ROUTE_TARGET, in.cfg.rt[0], uint16(in.cfg.rt[1]), true)
	}
	comms := append([]bgp.ExtendedCommunityInterface{rt, bgp.NewEncapExtended(bgp.TUNNEL_TYPE_VXLAN)}, extra...)
	return []bgp.PathAttributeInterface{
		bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP),
		bgp.NewPathAttributeMpReachNLRI(sp.key.local.String(), []bgp.AddrPrefixInterface{nlri}),
		bgp.NewPathAttributeExtendedCommunities(comms),
	}
}

// apiPath marshals a path for GoBGP.
func apiPath(nlri bgp.AddrPrefixInterface, attrs []bgp.PathAttributeInterface, withdraw bool) (*api.Path, error) {
	n, err := apiutil.MarshalNLRI(nlri)
	if err != nil {
		return nil, err
	}
	a, err := apiutil.MarshalPathAttributes(attrs)
	if err != nil {
		return nil, err
	}
	return &api.Path{Family: evpnFamily, Nlri: n, Pattrs: a, IsWithdraw: withdraw}, nil
}

// imetPath is in's type-3 route: ingress replication to this VTEP.
func (sp *speaker) imetPath(in *instance, withdraw bool) (*api.Path, error) {
	rd, err := in.routeDistinguisher()
	if err != nil {
		return nil, err
	}
	nlri := bgp.NewEVPNNLRI(bgp.EVPN_INCLUSIVE_MULTICAST_ETHERNET_TAG, bgp.NewEVPNMulticastEthernetTagRoute(rd, 0, sp.key.local.String()).RouteTypeData)
	attrs := sp.attrs(in, nlri)
	attrs = append(attrs, bgp.NewPathAttributePmsiTunnel(bgp.PMSI_TUNNEL_TYPE_INGRESS_REPL, false, in.cfg.vni, bgp.NewIngressReplTunnelID(sp.key.local.String())))
	return apiPath(nlri, attrs, withdraw)
}

// macPath is a type-2 route for a local MAC (and an address, if valid).
func (sp *speaker) macPath(in *instance, mac ether.MAC, ip netip.Addr, seq uint32, withdraw bool) (*api.Path, error) {
	rd, err := in.routeDistinguisher()
	if err != nil {
		return nil, err
	}
	ipStr := ""
	if ip.IsValid() {
		ipStr = ip.String()
	}
	nlri := bgp.NewEVPNMacIPAdvertisementRoute(rd, bgp.EthernetSegmentIdentifier{Type: bgp.ESI_ARBITRARY}, 0,
		ether.Long(mac), ipStr, []uint32{in.cfg.vni})
	var extra []bgp.ExtendedCommunityInterface
	if seq > 0 {
		extra = append(extra, bgp.NewMacMobilityExtended(seq, false))
	}
	return apiPath(nlri, sp.attrs(in, nlri, extra...), withdraw)
}

// advertiseMAC advertises a local MAC's routes for the addresses given,
// and with alone, the MAC's own (no address).
func (sp *speaker) advertiseMAC(in *instance, mac ether.MAC, seq uint32, ips []netip.Addr, alone bool) {
	if sp == nil {
		return // not started (unit tests of the instance's logic)
	}
	if alone {
		ips = append([]netip.Addr{{}}, ips...)
	}
	for _, ip := range ips {
		p, err := sp.macPath(in, mac, ip, seq, false)
		if err == nil {
			_, err = sp.bgp.AddPath(context.Background(), &api.AddPathRequest{Path: p})
		}
		if err != nil {
			sp.log.Warn("cannot advertise a type-2 route", "mac", ether.Long(mac), "err", err)
		}
	}
}

// withdrawMAC withdraws a local MAC's routes.
func (sp *speaker) withdrawMAC(in *instance, mac ether.MAC, l *localVNIC) {
	if sp == nil {
		return
	}
	ips := []netip.Addr{{}}
	for ip := range l.ips {
		ips = append(ips, ip)
	}
	for _, ip := range ips {
		p, err := sp.macPath(in, mac, ip, l.seq, true)
		if err == nil {
			err = sp.bgp.DeletePath(context.Background(), &api.DeletePathRequest{Family: evpnFamily, Path: p})
		}
		if err != nil {
			sp.log.Warn("cannot withdraw a type-2 route", "mac", ether.Long(mac), "err", err)
		}
	}
}

// withdrawAll withdraws every route of in.
func (sp *speaker) withdrawAll(in *instance) {
	in.mu.Lock()
	local := in.local
	in.local = map[ether.MAC]*localVNIC{}
	in.mu.Unlock()
	for mac, l := range local {
		sp.withdrawMAC(in, mac, l)
	}
	if p, err := sp.imetPath(in, true); err == nil {
		sp.bgp.DeletePath(context.Background(), &api.DeletePathRequest{Family: evpnFamily, Path: p})
	}
}

func sortStrings(s []string) []string { slices.Sort(s); return s }

// gobgpLogger sends GoBGP's log to overlayd's, a level down: what GoBGP
// calls info (every state change of every FSM) is debug here.
type gobgpLogger struct{ l logger }

func fieldArgs(f gobgplog.Fields) []any {
	var out []any
	for k, v := range f {
		out = append(out, k, v)
	}
	return out
}

func (g gobgpLogger) Panic(msg string, f gobgplog.Fields) { g.l.Warn("bgp: "+msg, fieldArgs(f)...) }
func (g gobgpLogger) Fatal(msg string, f gobgplog.Fields) { g.l.Warn("bgp: "+msg, fieldArgs(f)...) }
func (g gobgpLogger) Error(msg string, f gobgplog.Fields) { g.l.Warn("bgp: "+msg, fieldArgs(f)...) }
func (g gobgpLogger) Warn(msg string, f gobgplog.Fields)  { g.l.Debug("bgp: "+msg, fieldArgs(f)...) }
func (g gobgpLogger) Info(msg string, f gobgplog.Fields)  { g.l.Debug("bgp: "+msg, fieldArgs(f)...) }
func (g gobgpLogger) Debug(msg string, f gobgplog.Fields) {}
func (g gobgpLogger) SetLevel(gobgplog.LogLevel)          {}
func (g gobgpLogger) GetLevel() gobgplog.LogLevel         { return gobgplog.InfoLevel }
