package userspace

import (
	"net/netip"

	"overlaynet/ether"
	"overlaynet/underlayns"
)

// The switch's I/O seams, as wireguard-go has tun.Device and conn.Bind:
// the switch (overlay.go, gso.go) reads and writes a VNIC's frames only
// through a vnicDevice and the underlay's datagrams only through an
// underlaySocket, and opens both through the DataPath's ioSystem. The
// host's are TAP devices (tap.go) and UDP sockets (conn.go); the tests'
// are in memory (fakeio_test.go), so the switch is tested without root.

// vnicDevice is a VNIC's interface: one queue per worker, each read and
// written one frame (or, with a virtio-net header, one TCP super-frame)
// at a time.
type vnicDevice interface {
	// fds are the descriptors the workers wait on, one per queue; a
	// device without them (a fake) is drained by whoever drives it.
	fds() []int
	// read reads one frame from queue q: unix.EAGAIN when none is
	// waiting, os.ErrClosed (or another error) when the device is gone.
	read(q int, b []byte) (int, error)
	// write writes one frame into queue q, modulo the queues there are.
	write(q int, b []byte) error
	// vnetHdr reports whether frames carry a virtio-net header (TSO and
	// checksum offload).
	vnetHdr() bool
	// setMTU sets the interface's MTU wherever it now is; mac tells it
	// apart from others of its name.
	setMTU(mtu int, mac ether.MAC) error
	// close lets go of the device (a persistent one stays); destroy
	// deletes it.
	close() error
	destroy() error
}

// underlaySocket is an underlay UDP socket.
type underlaySocket interface {
	// fd is the descriptor a worker waits on; -1 for none (a fake).
	fd() int
	// recv reads one datagram (with UDP GRO, a run of them) into buf and
	// its control messages into oob: unix.EAGAIN when none is waiting.
	recv(m *recvMsg, buf, oob []byte) (n, oobn int, err error)
	// send sends b to dest as one datagram or, with a UDP_SEGMENT size
	// in oob, as a GSO run of them (unix.EINVAL when that is refused).
	send(b, oob []byte, dest netip.AddrPort) error
	close() error
}

// vnicSpec is what a VNIC's device is opened with.
type vnicSpec struct {
	name, owner string // owner tags persistent devices (Options.Owner)
	mac         ether.MAC
	mtu         int
	persistent  bool
	adopt       bool // take over a persistent device of that name
	vnet        bool // with a virtio-net header (offloads)
	queues      int
}

// ioSystem opens the switch's devices and sockets.
type ioSystem interface {
	openVNIC(s vnicSpec) (vnicDevice, error)
	// listen binds n receive sockets to addr (one per worker), with UDP
	// GRO when gro is set.
	listen(ns *underlayns.NS, addr netip.AddrPort, gro bool, n int) ([]underlaySocket, error)
	// senders opens the send sockets of a listen address on ip, one per
	// source port flows are spread over.
	senders(ns *underlayns.NS, ip netip.Addr) ([]underlaySocket, error)
	// listenRaw opens the one socket, receiving and sending, of an
	// encapsulation carried straight over IP protocol proto on ip.
	listenRaw(ns *underlayns.NS, ip netip.Addr, proto int) (underlaySocket, error)
}

// hostIO is the host's: TAP devices, UDP sockets and raw IP sockets.
type hostIO struct{}

func (hostIO) openVNIC(s vnicSpec) (vnicDevice, error) {
	t, err := openTAP(s.name, s.owner, s.mac, s.mtu, s.persistent, s.adopt, s.vnet, s.queues)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// The sockets of an underlay in another network namespace are made on
// its thread (underlayns), and used from anywhere.

func (hostIO) listen(ns *underlayns.NS, addr netip.AddrPort, gro bool, n int) ([]underlaySocket, error) {
	var socks []*udpSocket
	err := ns.Do(func() (err error) { socks, err = listenUDP(addr, gro, n); return err })
	return sockets(socks), err
}

func (hostIO) senders(ns *underlayns.NS, ip netip.Addr) ([]underlaySocket, error) {
	var socks []*udpSocket
	err := ns.Do(func() (err error) { socks, err = openSenders(ip); return err })
	return sockets(socks), err
}

func (hostIO) listenRaw(ns *underlayns.NS, ip netip.Addr, proto int) (underlaySocket, error) {
	var s *rawSocket
	if err := ns.Do(func() (err error) { s, err = openRaw(ip, proto); return err }); err != nil {
		return nil, err
	}
	return s, nil
}

func sockets(socks []*udpSocket) []underlaySocket {
	out := make([]underlaySocket, len(socks))
	for i, s := range socks {
		out[i] = s
	}
	return out
}

var (
	_ vnicDevice     = (*tap)(nil)
	_ underlaySocket = (*udpSocket)(nil)
)
