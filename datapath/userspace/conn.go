package userspace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// numSenders is how many source ports a listener spreads flows over. The
// flow hash of the inner frame picks one, so one flow always leaves from
// one port and the underlay can balance flows over paths (RFC 7348 §5).
const numSenders = 16

// sockBuf is the socket buffer size asked for: bursts from a TAP arrive
// faster than a busy worker drains them.
const sockBuf = 4 << 20

// udpSocket is an underlay UDP socket held as a bare descriptor, out of
// the Go runtime's poller: a datagram arriving then wakes only the worker
// that waits for it (worker.go), and neither that nor a send completing
// wakes a runtime thread with nothing to do.
type udpSocket struct {
	family int // unix.AF_INET or unix.AF_INET6
	// mu is held for reading around every use of fd, and for writing by
	// close, so that a descriptor number is never used after it is
	// closed and perhaps reused.
	mu     sync.RWMutex
	sfd    int
	closed bool
}

// openUDP binds a non-blocking UDP socket to addr, into the port's
// SO_REUSEPORT group with reuse. An unspecified IPv6 address ("::")
// serves IPv4 peers too.
func openUDP(addr netip.AddrPort, reuse bool) (*udpSocket, error) {
	ip := addr.Addr()
	family := unix.AF_INET6
	if ip.Is4() {
		family = unix.AF_INET
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("UDP socket: %w", err)
	}
	if family == unix.AF_INET6 {
		v6only := 1
		if ip.IsUnspecified() {
			v6only = 0
		}
		unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, v6only)
	}
	if reuse {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}
	if err := unix.Bind(fd, sockaddr(addr)); err != nil {
		unix.Close(fd)
		return nil, err
	}
	s := &udpSocket{family: family, sfd: fd}
	s.setBuffers(sockBuf, sockBuf)
	return s, nil
}

// sockaddr is addr as bind takes it: an IPv6 zone is its interface's
// index.
func sockaddr(addr netip.AddrPort) unix.Sockaddr {
	ip := addr.Addr()
	if ip.Is4() {
		return &unix.SockaddrInet4{Port: int(addr.Port()), Addr: ip.As4()}
	}
	sa6 := &unix.SockaddrInet6{Port: int(addr.Port()), Addr: ip.As16()}
	if z := ip.Zone(); z != "" {
		if ifi, err := netInterfaceIndex(z); err == nil {
			sa6.ZoneId = uint32(ifi)
		}
	}
	return sa6
}

// listenUDP binds n underlay receive sockets to addr, one per worker,
// with UDP GRO when gro is set: the kernel then hands over runs of
// datagrams in one read. Several sockets form an SO_REUSEPORT group, in
// which the kernel picks a socket by a hash of the sender's address and
// port, so a flow always reaches the same one.
func listenUDP(addr netip.AddrPort, gro bool, n int) ([]*udpSocket, error) {
	fail := func(err error, socks []*udpSocket) ([]*udpSocket, error) {
		for _, s := range socks {
			s.close()
		}
		return nil, fmt.Errorf("cannot listen on %s: %w", addr, err)
	}
	if n > 1 && addr.Port() != 0 {
		// A group would share the port with anyone who asks the same
		// way, another overlayd among them: make sure first that nobody
		// holds it, with a plain bind.
		probe, err := openUDP(addr, false)
		if err != nil {
			return fail(err, nil)
		}
		probe.close()
	}
	var socks []*udpSocket
	for len(socks) < n {
		s, err := openUDP(addr, n > 1)
		if err != nil {
			return fail(err, socks)
		}
		if gro {
			unix.SetsockoptInt(s.sfd, unix.IPPROTO_UDP, unix.UDP_GRO, 1)
		}
		socks = append(socks, s)
		// Port 0: the rest join the port the first one got.
		port := s.localPort()
		if port == 0 {
			return fail(errors.New("the kernel did not say which port it gave"), socks)
		}
		addr = netip.AddrPortFrom(addr.Addr(), uint16(port))
	}
	return socks, nil
}

// openSenders binds numSenders sockets on the listen IP, each on its own
// port in the dynamic range 49152-65535.
func openSenders(ip netip.Addr) ([]*udpSocket, error) {
	var out []*udpSocket
	for tries := 0; len(out) < numSenders; tries++ {
		port := uint16(49152 + rand.IntN(16384))
		if tries > 20*numSenders {
			port = 0 // range crowded: let the kernel pick
		}
		s, err := openUDP(netip.AddrPortFrom(ip, port), false)
		if err != nil {
			if errors.Is(err, unix.EADDRINUSE) {
				continue
			}
			for _, o := range out {
				o.close()
			}
			return nil, fmt.Errorf("open underlay send socket on %s: %w", ip, err)
		}
		// Nothing is ever sent to these ports; a tiny receive buffer
		// keeps strays from holding memory.
		s.setBuffers(4096, sockBuf)
		out = append(out, s)
	}
	return out, nil
}

// setBuffers sizes the socket buffers, past the sysctl limits where the
// daemon may (CAP_NET_ADMIN), else as far as the limits allow.
func (s *udpSocket) setBuffers(rcv, snd int) {
	unix.SetsockoptInt(s.sfd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcv)
	unix.SetsockoptInt(s.sfd, unix.SOL_SOCKET, unix.SO_SNDBUF, snd)
	unix.SetsockoptInt(s.sfd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcv)
	unix.SetsockoptInt(s.sfd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, snd)
}

// localPort returns the port the socket is bound to.
func (s *udpSocket) localPort() int {
	sa, err := unix.Getsockname(s.sfd)
	if err != nil {
		return 0
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return sa.Port
	case *unix.SockaddrInet6:
		return sa.Port
	}
	return 0
}

func (s *udpSocket) fd() int { return s.sfd }

func (s *udpSocket) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return unix.Close(s.sfd)
}

// recvMsg is a receive's working space, kept between reads so that a
// read allocates nothing.
type recvMsg struct {
	msg unix.Msghdr
	iov unix.Iovec
	// A raw IPv4 socket's read puts the IP header apart (rawSocket).
	iovs  [2]unix.Iovec
	ipHdr [ipv4HeaderMin]byte
	// from is the sender's address (msg.Name), for a multicast
	// overlay's learning.
	from unix.RawSockaddrAny
}

// source returns the sender of the last datagram read, when the read
// asked for it (a UDP socket's does).
func (m *recvMsg) source() netip.AddrPort {
	if m.msg.Name == nil {
		return netip.AddrPort{}
	}
	switch m.from.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&m.from))
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(p[0])<<8|uint16(p[1]))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&m.from))
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(p[0])<<8|uint16(p[1]))
	}
	return netip.AddrPort{}
}

// recv reads one datagram (with UDP GRO, a run of them) into buf and its
// control messages into oob; unix.EAGAIN when none is waiting.
func (s *udpSocket) recv(m *recvMsg, buf, oob []byte) (n, oobn int, err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, 0, os.ErrClosed
	}
	m.iov.Base = &buf[0]
	m.iov.SetLen(len(buf))
	m.msg = unix.Msghdr{Iov: &m.iov, Control: &oob[0],
		Name: (*byte)(unsafe.Pointer(&m.from)), Namelen: unix.SizeofSockaddrAny}
	m.msg.SetIovlen(1)
	m.msg.SetControllen(len(oob))
	for {
		r, _, e := unix.Syscall(unix.SYS_RECVMSG, uintptr(s.sfd), uintptr(unsafe.Pointer(&m.msg)), 0)
		switch e {
		case 0:
			return int(r), int(m.msg.Controllen), nil
		case unix.EINTR:
			continue
		}
		return 0, 0, e
	}
}

// send sends b to dest as one datagram or, with a UDP_SEGMENT size in
// the control messages oob, as a GSO run of them. When the send buffer
// is full it waits for room, up to sendWait, as a NIC queue would push
// back; then it gives up.
func (s *udpSocket) send(b, oob []byte, dest netip.AddrPort) error {
	var msg unix.Msghdr
	var iov unix.Iovec
	var sa4 unix.RawSockaddrInet4
	var sa6 unix.RawSockaddrInet6
	iov.Base = &b[0]
	iov.SetLen(len(b))
	msg.Iov = &iov
	msg.SetIovlen(1)
	if len(oob) > 0 {
		msg.Control = &oob[0]
		msg.SetControllen(len(oob))
	}
	ip := dest.Addr()
	port := dest.Port()
	if s.family == unix.AF_INET {
		if !ip.Unmap().Is4() {
			return fmt.Errorf("IPv6 destination %s from an IPv4 socket", ip)
		}
		sa4.Family = unix.AF_INET
		putPort(&sa4.Port, port)
		sa4.Addr = ip.Unmap().As4()
		msg.Name = (*byte)(unsafe.Pointer(&sa4))
		msg.Namelen = unix.SizeofSockaddrInet4
	} else {
		sa6.Family = unix.AF_INET6
		putPort(&sa6.Port, port)
		sa6.Addr = ip.As16() // IPv4 as v4-mapped, for a dual-stack socket
		if z := ip.Zone(); z != "" {
			idx, err := netInterfaceIndex(z)
			if err != nil {
				return fmt.Errorf("destination %s: %w", dest, err)
			}
			sa6.Scope_id = uint32(idx)
		}
		msg.Name = (*byte)(unsafe.Pointer(&sa6))
		msg.Namelen = unix.SizeofSockaddrInet6
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return os.ErrClosed
	}
	waited := false
	for {
		_, _, e := unix.Syscall(unix.SYS_SENDMSG, uintptr(s.sfd), uintptr(unsafe.Pointer(&msg)), 0)
		switch {
		case e == 0:
			return nil
		case e == unix.EINTR:
			continue
		case e == unix.EAGAIN && !waited:
			waited = true
			pfd := [1]unix.PollFd{{Fd: int32(s.sfd), Events: unix.POLLOUT}}
			unix.Poll(pfd[:], sendWait)
			continue
		}
		return e
	}
}

// sendWait is how long, in milliseconds, a send waits for room in a full
// socket buffer before the packet is dropped.
const sendWait = 10

// groSize returns the datagram size of a GRO read from its control
// message, 0 when there is none.
func groSize(oob []byte) int {
	// Walked by hand: ParseSocketControlMessage allocates, and this runs
	// for every read.
	hl := unix.CmsgLen(0)
	for len(oob) >= hl {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		n := int(h.Len)
		if n < hl || n > len(oob) {
			return 0
		}
		if h.Level == unix.IPPROTO_UDP && h.Type == unix.UDP_GRO && n >= hl+4 {
			return int(int32(binary.NativeEndian.Uint32(oob[hl:]))) // an int
		}
		oob = oob[min(unix.CmsgSpace(n-hl), len(oob)):]
	}
	return 0
}

// gsoOOB writes a UDP_SEGMENT control message for segments of size seg
// into b and returns it.
func gsoOOB(b []byte, seg int) []byte {
	n := unix.CmsgSpace(2)
	b = b[:n]
	clear(b)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level = unix.IPPROTO_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(b[unix.CmsgLen(0):], uint16(seg)) // a u16
	return b
}

// putPort stores a port in network byte order into a sockaddr field.
func putPort(field *uint16, port uint16) {
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(field))[:], port)
}

// netInterfaceIndex resolves the zone of a link-local address.
func netInterfaceIndex(zone string) (int, error) {
	ifi, err := net.InterfaceByName(zone)
	if err != nil {
		return 0, err
	}
	return ifi.Index, nil
}
