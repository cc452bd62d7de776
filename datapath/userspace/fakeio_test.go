package userspace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"overlaynet/ether"
	"overlaynet/underlayns"
)

// The in-memory I/O of the switch's tests: a fakeIO opens fakeVNICs and
// fakeSockets, which have no descriptors, so no worker waits on them; the
// test drains them by hand (switchHarness.pump), as a worker would.

type fakeIO struct {
	mu      sync.Mutex
	vnics   map[string]*fakeVNIC
	sockets map[netip.AddrPort][]*fakeSocket // receive sockets by listen address
	sent    []sentPacket                     // by every send socket, in order
	sendErr error                            // when set, every send fails with it
	// onSend, when set, is called with each datagram before it is
	// recorded, outside the lock (a slow NIC).
	onSend func(b []byte)
}

func newFakeIO() *fakeIO {
	return &fakeIO{vnics: map[string]*fakeVNIC{}, sockets: map[netip.AddrPort][]*fakeSocket{}}
}

// sentPacket is one datagram a send socket sent (a GSO send is split into
// its datagrams, each remembering the size it was cut at).
type sentPacket struct {
	data []byte
	dest netip.AddrPort
	gso  int // the UDP_SEGMENT size of the send it came from, 0 for none
}

func (f *fakeIO) openVNIC(s vnicSpec) (vnicDevice, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, dup := f.vnics[s.name]; dup {
		return nil, fmt.Errorf("fake: interface %s exists", s.name)
	}
	v := &fakeVNIC{spec: s}
	f.vnics[s.name] = v
	return v, nil
}

func (f *fakeIO) listen(_ *underlayns.NS, addr netip.AddrPort, gro bool, n int) ([]underlaySocket, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.sockets[addr]) > 0 {
		return nil, fmt.Errorf("cannot listen on %s: address already in use", addr)
	}
	var out []underlaySocket
	for range n {
		s := &fakeSocket{io: f, gro: gro}
		f.sockets[addr] = append(f.sockets[addr], s)
		out = append(out, s)
	}
	return out, nil
}

func (f *fakeIO) senders(_ *underlayns.NS, ip netip.Addr) ([]underlaySocket, error) {
	var out []underlaySocket
	for range numSenders {
		out = append(out, &fakeSocket{io: f})
	}
	return out, nil
}

func (f *fakeIO) listenRaw(_ *underlayns.NS, ip netip.Addr, proto int) (underlaySocket, error) {
	socks, err := f.listen(nil, netip.AddrPortFrom(ip, 0), false, 1)
	if err != nil {
		return nil, err
	}
	return socks[0], nil
}

func (f *fakeIO) vnic(name string) *fakeVNIC {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.vnics[name]
}

// takeSent returns what was sent since the last call.
func (f *fakeIO) takeSent() []sentPacket {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.sent
	f.sent = nil
	return out
}

// fakeVNIC is a VNIC's interface: frames its guest sends wait in in,
// frames the switch writes land in out.
type fakeVNIC struct {
	spec vnicSpec

	mu        sync.Mutex
	in, out   [][]byte
	mtu       int
	writeErr  error
	closed    bool
	destroyed bool
}

// send queues a frame the guest transmits.
func (v *fakeVNIC) send(frame []byte) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.in = append(v.in, slices.Clone(frame))
}

// received returns the frames written to the VNIC since the last call.
func (v *fakeVNIC) received() [][]byte {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := v.out
	v.out = nil
	return out
}

func (v *fakeVNIC) fds() []int    { return nil }
func (v *fakeVNIC) vnetHdr() bool { return v.spec.vnet }

func (v *fakeVNIC) read(q int, b []byte) (int, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return 0, os.ErrClosed
	}
	if len(v.in) == 0 {
		return 0, unix.EAGAIN
	}
	n := copy(b, v.in[0])
	v.in = v.in[1:]
	return n, nil
}

func (v *fakeVNIC) write(q int, b []byte) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return os.ErrClosed
	}
	if v.writeErr != nil {
		return v.writeErr
	}
	v.out = append(v.out, slices.Clone(b))
	return nil
}

func (v *fakeVNIC) setMTU(mtu int, _ ether.MAC) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.mtu = mtu
	return nil
}

func (v *fakeVNIC) close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.closed = true
	return nil
}

func (v *fakeVNIC) destroy() error {
	v.mu.Lock()
	v.destroyed = true
	v.mu.Unlock()
	return v.close()
}

// fakeSocket is an underlay socket: datagrams to receive wait in in.
type fakeSocket struct {
	io  *fakeIO
	gro bool

	mu     sync.Mutex
	in     []fakeRead
	closed bool
}

// fakeRead is what one recv returns: a datagram, or with gro set a run
// of datagrams of size gro (the last may be shorter), as UDP GRO reads.
type fakeRead struct {
	data []byte
	gro  int
}

// deliver queues a read for the switch.
func (s *fakeSocket) deliver(r fakeRead) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.in = append(s.in, fakeRead{slices.Clone(r.data), r.gro})
}

func (s *fakeSocket) fd() int { return -1 }

func (s *fakeSocket) recv(_ *recvMsg, buf, oob []byte) (int, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, 0, os.ErrClosed
	}
	if len(s.in) == 0 {
		return 0, 0, unix.EAGAIN
	}
	r := s.in[0]
	s.in = s.in[1:]
	n := copy(buf, r.data)
	oobn := 0
	if r.gro > 0 {
		oobn = putGRO(oob, r.gro)
	}
	return n, oobn, nil
}

func (s *fakeSocket) send(b, oob []byte, dest netip.AddrPort) error {
	if s.io.sendErr != nil {
		return s.io.sendErr
	}
	seg := gsoSize(oob)
	if s.io.onSend != nil {
		s.io.onSend(b)
	}
	s.io.mu.Lock()
	defer s.io.mu.Unlock()
	if seg == 0 {
		s.io.sent = append(s.io.sent, sentPacket{data: slices.Clone(b), dest: dest})
		return nil
	}
	for off := 0; off < len(b); off += seg {
		s.io.sent = append(s.io.sent, sentPacket{data: slices.Clone(b[off:min(off+seg, len(b))]), dest: dest, gso: seg})
	}
	return nil
}

func (s *fakeSocket) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

// putGRO writes a UDP_GRO control message for datagrams of size seg,
// as the kernel does on a GRO read, and returns its length.
func putGRO(b []byte, seg int) int {
	n := unix.CmsgSpace(4)
	clear(b[:n])
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level = unix.IPPROTO_UDP
	h.Type = unix.UDP_GRO
	h.SetLen(unix.CmsgLen(4))
	binary.NativeEndian.PutUint32(b[unix.CmsgLen(0):], uint32(seg))
	return n
}

// gsoSize reads the UDP_SEGMENT size a send asks for, 0 for none.
func gsoSize(oob []byte) int {
	if len(oob) < unix.CmsgLen(2) {
		return 0
	}
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	if h.Level != unix.IPPROTO_UDP || h.Type != unix.UDP_SEGMENT {
		return 0
	}
	return int(binary.NativeEndian.Uint16(oob[unix.CmsgLen(0):]))
}

var errFakeDown = errors.New("fake: interface down")
