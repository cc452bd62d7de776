package userspace

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// numSenders is how many source ports a listener spreads flows over. The
// flow hash of the inner frame picks one, so one flow always leaves from
// one port and the underlay can balance flows over paths (RFC 7348 §5).
const numSenders = 16

// sockBuf is the socket buffer size asked for; bursts from a TAP arrive
// faster than one goroutine drains them.
const sockBuf = 4 << 20

// listenUDP binds the underlay receive socket, with UDP GRO when gro is
// set: the kernel then hands over runs of datagrams in one read.
func listenUDP(addr netip.AddrPort, gro bool) (*net.UDPConn, error) {
	c, err := net.ListenUDP(udpNetwork(addr.Addr()), net.UDPAddrFromAddrPort(addr))
	if err != nil {
		var se *net.OpError
		if errors.As(err, &se) {
			err = se.Err
		}
		return nil, fmt.Errorf("cannot listen on %s: %w", addr, err)
	}
	setBuffers(c)
	if gro {
		if rc, err := c.SyscallConn(); err == nil {
			rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1) })
		}
	}
	return c, nil
}

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
		if h.Level == unix.IPPROTO_UDP && h.Type == unix.UDP_GRO && n >= hl+2 {
			return int(nativeUint16(oob[hl:]))
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
	*(*uint16)(unsafe.Pointer(&b[unix.CmsgLen(0)])) = uint16(seg)
	return b
}

func nativeUint16(b []byte) uint16 { return *(*uint16)(unsafe.Pointer(&b[0])) }

// openSenders binds numSenders sockets on the listen IP, each on its own
// port in the dynamic range 49152-65535.
func openSenders(ip netip.Addr) ([]*net.UDPConn, error) {
	var out []*net.UDPConn
	for tries := 0; len(out) < numSenders; tries++ {
		port := uint16(49152 + rand.IntN(16384))
		if tries > 20*numSenders {
			port = 0 // range crowded: let the kernel pick
		}
		c, err := net.ListenUDP(udpNetwork(ip), net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, port)))
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				continue
			}
			for _, o := range out {
				o.Close()
			}
			return nil, fmt.Errorf("open underlay send socket on %s: %w", ip, err)
		}
		setBuffers(c)
		// Nothing is ever sent to these ports; a tiny receive buffer
		// keeps strays from holding memory.
		c.SetReadBuffer(4096)
		out = append(out, c)
	}
	return out, nil
}

func udpNetwork(ip netip.Addr) string {
	switch {
	case ip.Is4():
		return "udp4"
	case ip.IsUnspecified():
		return "udp" // "::" serves IPv4 and IPv6 peers
	}
	return "udp6"
}

// setBuffers raises the socket buffers past the sysctl limits where the
// daemon may (CAP_NET_ADMIN), else as far as the limits allow.
func setBuffers(c *net.UDPConn) {
	c.SetReadBuffer(sockBuf)
	c.SetWriteBuffer(sockBuf)
	if rc, err := c.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, sockBuf)
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sockBuf)
		})
	}
}
