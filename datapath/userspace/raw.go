package userspace

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawSocket is the underlay socket of an encapsulation carried straight
// over IP (NVGRE's GRE, encap.IPProtocol): one raw IP socket, bound to
// the listen address, receives every packet of the protocol sent to it
// and sends to peers, the kernel writing the IP header. There are no
// ports, so no SO_REUSEPORT group and no per-flow source ports: one
// socket, drained by one worker; and no GSO or GRO for it in the kernel,
// so super-frames are cut in overlayd and their packets sent together
// with sendmmsg.
type rawSocket struct {
	*udpSocket // the descriptor, its lock, buffers and sendmsg
}

// openRaw opens and binds a raw socket for IP protocol proto on ip.
func openRaw(ip netip.Addr, proto int) (*rawSocket, error) {
	if ip.Is6() && ip.IsUnspecified() {
		// A UDP socket on "::" serves IPv4 too; a raw one does not.
		return nil, fmt.Errorf("an encapsulation straight over IP (protocol %d) needs a specific listen address: a raw socket on :: does not serve IPv4", proto)
	}
	family := unix.AF_INET6
	if ip.Is4() {
		family = unix.AF_INET
	}
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, fmt.Errorf("raw IP socket for protocol %d on %s (overlayd needs CAP_NET_RAW): %w", proto, ip, err)
	}
	if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(ip, 0))); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("cannot listen for IP protocol %d on %s: %w", proto, ip, err)
	}
	s := &rawSocket{&udpSocket{family: family, sfd: fd}}
	s.setBuffers(sockBuf, sockBuf)
	return s, nil
}

// ipv4HeaderMin is the length of an IPv4 header without options.
const ipv4HeaderMin = 20

// recv reads one packet's payload into buf. An IPv4 raw socket hands
// over the IP header too: it lands in m's own space (a first buffer of
// the minimum header's size), so the payload lands at buf[0] without a
// copy, unless the header has options.
func (s *rawSocket) recv(m *recvMsg, buf, oob []byte) (n, oobn int, err error) {
	if s.family != unix.AF_INET {
		return s.udpSocket.recv(m, buf, oob)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, 0, os.ErrClosed
	}
	m.iovs[0].Base = &m.ipHdr[0]
	m.iovs[0].SetLen(ipv4HeaderMin)
	m.iovs[1].Base = &buf[0]
	m.iovs[1].SetLen(len(buf))
	m.msg = unix.Msghdr{Iov: &m.iovs[0]}
	m.msg.SetIovlen(2)
	for {
		r, _, e := unix.Syscall(unix.SYS_RECVMSG, uintptr(s.sfd), uintptr(unsafe.Pointer(&m.msg)), 0)
		switch e {
		case 0:
		case unix.EINTR:
			continue
		default:
			return 0, 0, e
		}
		n := int(r) - ipv4HeaderMin
		if n < 0 {
			return 0, 0, nil // a runt: counted short by the listener
		}
		if opts := int(m.ipHdr[0]&0x0f)*4 - ipv4HeaderMin; opts > 0 {
			// Options: they came first in buf.
			if opts > n {
				return 0, 0, nil
			}
			copy(buf, buf[opts:n])
			n -= opts
		}
		return n, 0, nil
	}
}

// send sends b to dest's address alone. A GSO run (a UDP_SEGMENT size in
// oob), which the kernel would not cut for a raw socket, is cut here and
// sent with one sendmmsg per up to maxGSOSegments packets.
func (s *rawSocket) send(b, oob []byte, dest netip.AddrPort) error {
	dest = netip.AddrPortFrom(dest.Addr(), 0)
	if len(oob) == 0 {
		return s.udpSocket.send(b, nil, dest)
	}
	seg := segmentSize(oob)
	if seg <= 0 {
		return unix.EINVAL
	}
	var sa4 unix.RawSockaddrInet4
	var sa6 unix.RawSockaddrInet6
	var name unsafe.Pointer
	var namelen uint32
	ip := dest.Addr()
	if s.family == unix.AF_INET {
		if !ip.Unmap().Is4() {
			return fmt.Errorf("IPv6 destination %s from an IPv4 socket", ip)
		}
		sa4.Family, sa4.Addr = unix.AF_INET, ip.Unmap().As4()
		name, namelen = unsafe.Pointer(&sa4), unix.SizeofSockaddrInet4
	} else {
		sa6.Family, sa6.Addr = unix.AF_INET6, ip.As16()
		name, namelen = unsafe.Pointer(&sa6), unix.SizeofSockaddrInet6
	}
	var msgs [maxGSOSegments]mmsghdr
	var iovs [maxGSOSegments]unix.Iovec
	n := 0
	for off := 0; off < len(b) && n < len(msgs); off += seg {
		end := min(off+seg, len(b))
		iovs[n].Base = &b[off]
		iovs[n].SetLen(end - off)
		msgs[n].hdr = unix.Msghdr{Name: (*byte)(name), Namelen: namelen, Iov: &iovs[n]}
		msgs[n].hdr.SetIovlen(1)
		n++
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return os.ErrClosed
	}
	waited := false
	for sent := 0; sent < n; {
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(s.sfd), uintptr(unsafe.Pointer(&msgs[sent])), uintptr(n-sent), 0, 0, 0)
		switch {
		case e == 0:
			sent += int(r)
		case e == unix.EINTR:
		case e == unix.EAGAIN && !waited:
			waited = true
			pfd := [1]unix.PollFd{{Fd: int32(s.sfd), Events: unix.POLLOUT}}
			unix.Poll(pfd[:], sendWait)
		default:
			return e
		}
	}
	return nil
}

// mmsghdr is struct mmsghdr: a message and, on return, its length.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// segmentSize reads the UDP_SEGMENT size gsoOOB wrote, 0 when there is
// none.
func segmentSize(oob []byte) int {
	hl := unix.CmsgLen(0)
	if len(oob) < unix.CmsgLen(2) {
		return 0
	}
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	if h.Level != unix.IPPROTO_UDP || h.Type != unix.UDP_SEGMENT {
		return 0
	}
	return int(binary.NativeEndian.Uint16(oob[hl:]))
}

var _ underlaySocket = (*rawSocket)(nil)
