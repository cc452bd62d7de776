// Package ether holds Ethernet address handling shared by the command
// line, the core and the plugins: parsing every MAC form illumos accepts
// and printing the forms it prints.
package ether

import (
	"crypto/rand"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// MAC is an Ethernet address: the one form the project holds one in, a
// comparable value that keys maps. net.HardwareAddr appears only where a
// library takes one (netlink).
type MAC = [6]byte

// ParseMAC parses a MAC address written as six ':'-separated groups of
// one or two hex digits ("02:08:20:aa:bb:01" or "2:8:20:aa:bb:1"), the
// forms illumos's ether_aton accepts. '-' separators are accepted too.
func ParseMAC(s string) (MAC, error) {
	sep := ":"
	if !strings.Contains(s, ":") && strings.Contains(s, "-") {
		sep = "-"
	}
	parts := strings.Split(s, sep)
	if len(parts) != 6 {
		return MAC{}, fmt.Errorf("invalid MAC address %q: want six groups of hex digits separated by ':'", s)
	}
	var mac MAC
	for i, p := range parts {
		if len(p) < 1 || len(p) > 2 {
			return MAC{}, fmt.Errorf("invalid MAC address %q: group %d must have one or two hex digits", s, i+1)
		}
		v, err := strconv.ParseUint(p, 16, 8)
		if err != nil {
			return MAC{}, fmt.Errorf("invalid MAC address %q: group %d is not hexadecimal", s, i+1)
		}
		mac[i] = byte(v)
	}
	return mac, nil
}

// Short prints a MAC in the illumos short form, without leading zeros
// ("2:8:20:aa:bb:1").
func Short(mac MAC) string {
	parts := make([]string, len(mac))
	for i, b := range mac {
		parts[i] = strconv.FormatUint(uint64(b), 16)
	}
	return strings.Join(parts, ":")
}

// Long prints a MAC with two digits a group ("02:08:20:aa:bb:01"), as
// Linux tools do.
func Long(mac MAC) string { return net.HardwareAddr(mac[:]).String() }

// IsUnicast reports whether mac is an individual (not group) address.
func IsUnicast(mac MAC) bool { return mac[0]&1 == 0 }

// IsZero reports whether mac is 00:00:00:00:00:00.
func IsZero(mac MAC) bool { return mac == MAC{} }

// RandomMAC returns a random unicast MAC with the given prefix (at most
// five bytes). The illumos default prefix for VNICs is 2:8:20, which is
// locally administered.
func RandomMAC(prefix []byte) MAC {
	var mac MAC
	rand.Read(mac[:])
	copy(mac[:], prefix)
	if len(prefix) == 0 {
		mac[0] = mac[0]&^1 | 2 // unicast, locally administered
	}
	return mac
}

// DefaultPrefix is the prefix of automatically chosen VNIC MACs.
var DefaultPrefix = []byte{0x02, 0x08, 0x20}
