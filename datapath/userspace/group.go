package userspace

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"overlaynet/datapath"
	"overlaynet/encap"
	"overlaynet/ether"
	"overlaynet/underlayns"
)

// A multicast overlay (datapath.GroupConfig) floods what has no
// destination to its group and learns destinations from what arrives,
// as the Linux vxlan driver does in group mode. Its group socket, bound
// to the group and port and joined on the listen address's interface,
// receives the group's packets; its learned table is its own, apart
// from the target table that the engine writes.

// learnTable maps remote MACs to where frames from them came from.
type learnTable struct {
	mu     sync.RWMutex
	m      map[ether.MAC]*learned
	ageing time.Duration
	max    int
	// swept is when a full table was last swept: at most once a second,
	// so that a flood of new MACs into a full table is not a sweep each.
	swept int64
}

type learned struct {
	dest encap.Dest
	seen atomic.Int64 // unix nanoseconds of the last frame from it
}

func newLearnTable(g *datapath.GroupConfig) *learnTable {
	return &learnTable{m: map[ether.MAC]*learned{}, ageing: g.Ageing, max: g.MaxLearned}
}

// lookup returns mac's learned destination, if it has one not aged out.
func (lt *learnTable) lookup(mac ether.MAC, now int64) (encap.Dest, bool) {
	lt.mu.RLock()
	e := lt.m[mac]
	ok := e != nil && now-e.seen.Load() <= int64(lt.ageing)
	var d encap.Dest
	if ok {
		d = e.dest
	}
	lt.mu.RUnlock()
	return d, ok
}

// setLimits applies a changed ageing and bound.
func (lt *learnTable) setLimits(g *datapath.GroupConfig) {
	lt.mu.Lock()
	lt.ageing, lt.max = g.Ageing, g.MaxLearned
	lt.mu.Unlock()
}

// learn records that a frame from mac came from dest. The common case, a
// known MAC at its known place, takes a read lock and one atomic store.
// It reports false when the table is full of live entries.
func (lt *learnTable) learn(mac ether.MAC, dest encap.Dest, now int64) bool {
	lt.mu.RLock()
	e := lt.m[mac]
	if e != nil && e.dest == dest {
		e.seen.Store(now)
		lt.mu.RUnlock()
		return true
	}
	lt.mu.RUnlock()
	lt.mu.Lock()
	defer lt.mu.Unlock()
	if e = lt.m[mac]; e == nil {
		if len(lt.m) >= lt.max {
			if now-lt.swept < int64(time.Second) {
				return false
			}
			lt.swept = now
			lt.sweepLocked(now)
			if len(lt.m) >= lt.max {
				return false
			}
		}
		e = &learned{}
		lt.m[mac] = e
	}
	e.dest = dest // a MAC that moved
	e.seen.Store(now)
	return true
}

func (lt *learnTable) sweepLocked(now int64) {
	for mac, e := range lt.m {
		if now-e.seen.Load() > int64(lt.ageing) {
			delete(lt.m, mac)
		}
	}
}

func (lt *learnTable) remove(mac ether.MAC) {
	lt.mu.Lock()
	delete(lt.m, mac)
	lt.mu.Unlock()
}

func (lt *learnTable) flush() {
	lt.mu.Lock()
	clear(lt.m)
	lt.mu.Unlock()
}

// list returns the live entries, as valid targets.
func (lt *learnTable) list(now int64) []datapath.Target {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	lt.sweepLocked(now)
	out := make([]datapath.Target, 0, len(lt.m))
	for mac, e := range lt.m {
		out = append(out, datapath.Target{MAC: mac, Dest: e.dest, State: datapath.TargetValid})
	}
	return out
}

// groupQueue is a multicast overlay's group socket, drained by a worker
// into its overlay alone: another overlay on the same group and port has
// a socket of its own, which the kernel gives a copy of every packet.
type groupQueue struct {
	ov   *overlay
	sock underlaySocket
}

func (g groupQueue) drain(sc *scratch, budget int) bool {
	return g.ov.state.Load().ln.drainTo(g.sock, sc, budget, g.ov)
}

// fromGroup handles a packet from the overlay's group socket: its own
// VNI's only; the listener counts what its own sockets get wrong.
func (ov *overlay) fromGroup(pkt []byte, rx *rxBatch, from netip.AddrPort) {
	st := ov.state.Load()
	vni, inner, err := st.cfg.Encap.Decap(pkt)
	if err != nil {
		st.ln.countBad(pkt, err)
		return
	}
	if vni != st.cfg.VNetID {
		return // another overlay's, which has its own copy
	}
	ov.fromUnderlay(inner, rx, from)
}

// learnFrom learns where a received frame's source MAC lives: the outer
// source address, on the group's port (a sender's source port is flow
// entropy, not where it listens). A MAC of a local VNIC is not learned:
// it is here, and a frame claiming it from afar is a loop or a lie.
func (ov *overlay) learnFrom(st *ovState, frame []byte, vlan uint16, from netip.AddrPort) {
	src := ether.MAC(frame[6:12])
	if !ether.IsUnicast(src) || ether.IsZero(src) {
		return
	}
	if _, local := ov.vnics.Load().byKey[vnicKey{vlan: vlan, mac: src}]; local {
		return
	}
	ov.learned.learn(src, encap.Dest{IP: from.Addr(), Port: st.cfg.Group.Dest.Port}, time.Now().UnixNano())
}

// groupSub is a multicast overlay's membership: its group socket, in a
// worker's set.
type groupSub struct {
	dest encap.Dest
	sock *udpSocket
	w    *worker
	id   int32
}

// join opens and watches the group socket for st's group, and makes the
// listener's send sockets send to groups out of the same interface.
// Called with ov.mu.
func (ov *overlay) join(st *ovState) (*groupSub, error) {
	g := st.cfg.Group
	sock, ifindex, err := openGroup(st.cfg.Underlay, g.Dest, st.cfg.Listen.Addr())
	if err != nil {
		return nil, err
	}
	for _, s := range st.ln.senders {
		multicastSend(s, g.Dest.IP.Is4(), ifindex)
	}
	w := ov.ws[int(g.Dest.IP.As16()[15])%len(ov.ws)]
	id, err := w.watch(sock.fd(), groupQueue{ov, sock})
	if err != nil {
		sock.close()
		return nil, err
	}
	ov.log.Info("joined multicast group", "group", g.Dest.String(), "ifindex", ifindex)
	return &groupSub{dest: g.Dest, sock: sock, w: w, id: id}, nil
}

// leave undoes join (closing the socket leaves the group).
func (gs *groupSub) leave() {
	gs.w.unwatch(gs.id)
	gs.sock.close()
}

// openGroup opens a multicast overlay's group socket in ns: bound to the
// group and port (sharing them with other overlays' sockets), joined on
// the interface of the listen address. It also returns that interface.
func openGroup(ns *underlayns.NS, g encap.Dest, listen netip.Addr) (*udpSocket, int, error) {
	var s *udpSocket
	var ifindex int
	err := ns.Do(func() error {
		var err error
		if ifindex, err = underlayns.InterfaceOf(listen); err != nil {
			return fmt.Errorf("the interface to join group %s on: %w", g.IP, err)
		}
		family := unix.AF_INET6
		if g.IP.Is4() {
			family = unix.AF_INET
		}
		fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
		if err != nil {
			return err
		}
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		var sa unix.Sockaddr
		if family == unix.AF_INET {
			// Only this socket's own group: not every group some
			// socket of this host joined on the port.
			unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_ALL, 0)
			sa = &unix.SockaddrInet4{Port: int(g.Port), Addr: g.IP.As4()}
			err = unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP,
				&unix.IPMreqn{Multiaddr: g.IP.As4(), Ifindex: int32(ifindex)})
		} else {
			unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
			sa = &unix.SockaddrInet6{Port: int(g.Port), Addr: g.IP.As16(), ZoneId: uint32(ifindex)}
			err = unix.SetsockoptIPv6Mreq(fd, unix.IPPROTO_IPV6, unix.IPV6_JOIN_GROUP,
				&unix.IPv6Mreq{Multiaddr: g.IP.As16(), Interface: uint32(ifindex)})
		}
		if err != nil {
			unix.Close(fd)
			return fmt.Errorf("join group %s on interface %d: %w", g.IP, ifindex, err)
		}
		if err := unix.Bind(fd, sa); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind group %s: %w", g.AddrPort(), err)
		}
		s = &udpSocket{family: family, sfd: fd}
		s.setBuffers(sockBuf, sockBuf)
		return nil
	})
	return s, ifindex, err
}

// multicastSend makes a send socket send to groups out of interface
// ifindex, with a TTL of 1 (the vxlan driver's default for a group) and
// without looping its packets back to this host's group sockets.
func multicastSend(s underlaySocket, v4 bool, ifindex int) {
	u, ok := s.(*udpSocket)
	if !ok {
		return
	}
	if v4 {
		unix.SetsockoptIPMreqn(u.sfd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &unix.IPMreqn{Ifindex: int32(ifindex)})
		unix.SetsockoptInt(u.sfd, unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, 0)
		unix.SetsockoptInt(u.sfd, unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, 1)
		return
	}
	unix.SetsockoptInt(u.sfd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, ifindex)
	unix.SetsockoptInt(u.sfd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_LOOP, 0)
	unix.SetsockoptInt(u.sfd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, 1)
}
