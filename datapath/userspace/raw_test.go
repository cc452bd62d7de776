package userspace

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestRawSocket: a raw socket for an unused IP protocol on loopback hands
// over what another sends it without the IPv4 header, options or not;
// a GSO run is cut into its packets.
func TestRawSocket(t *testing.T) {
	needRoot(t)
	const proto = 253 // RFC 3692: for experiments
	lo := netip.MustParseAddr("127.0.0.1")
	rx, err := openRaw(lo, proto)
	if err != nil {
		t.Fatal(err)
	}
	defer rx.close()
	tx, err := openRaw(lo, proto)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.close()
	var m recvMsg
	buf, oob := make([]byte, 2048), make([]byte, 64)
	read := func() []byte {
		t.Helper()
		pfd := []unix.PollFd{{Fd: int32(rx.fd()), Events: unix.POLLIN}}
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
			n, _, err := rx.recv(&m, buf, oob)
			if err == unix.EAGAIN {
				unix.Poll(pfd, 100)
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			return buf[:n]
		}
		t.Fatal("nothing received")
		return nil
	}
	payload := []byte("an encapsulated frame, straight over IP")
	dest := netip.AddrPortFrom(lo, 0)
	if err := tx.send(payload, nil, dest); err != nil {
		t.Fatal(err)
	}
	if got := read(); !bytes.Equal(got, payload) {
		t.Errorf("received % x, want the payload alone", got)
	}

	// IPv4 options (NOP, NOP, NOP, end): the header is 24 bytes.
	if err := unix.SetsockoptString(tx.sfd, unix.IPPROTO_IP, unix.IP_OPTIONS, "\x01\x01\x01\x00"); err != nil {
		t.Fatal(err)
	}
	if err := tx.send(payload, nil, dest); err != nil {
		t.Fatal(err)
	}
	if got := read(); !bytes.Equal(got, payload) {
		t.Errorf("with IP options: received % x, want the payload alone", got)
	}

	// A GSO run is cut here: three packets of 8, 8 and the rest.
	if err := tx.send(payload, gsoOOB(make([]byte, 64), 16), dest); err != nil {
		t.Fatalf("a GSO send: %v", err)
	}
	for off := 0; off < len(payload); off += 16 {
		if got := read(); !bytes.Equal(got, payload[off:min(off+16, len(payload))]) {
			t.Errorf("GSO packet at %d: % x", off, got)
		}
	}
}
