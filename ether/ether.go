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

// MAC is an Ethernet address as a comparable value, for map keys.
type MAC = [6]byte

// ParseMAC parses a MAC address written as six ':'-separated groups of
// one or two hex digits ("02:08:20:aa:bb:01" or "2:8:20:aa:bb:1"), the
// forms illumos's ether_aton accepts. '-' separators are accepted too.
func ParseMAC(s string) (net.HardwareAddr, error) {
	sep := ":"
	if !strings.Contains(s, ":") && strings.Contains(s, "-") {
		sep = "-"
	}
	parts := strings.Split(s, sep)
	if len(parts) != 6 {
		return nil, fmt.Errorf("invalid MAC address %q: want six groups of hex digits separated by ':'", s)
	}
	mac := make(net.HardwareAddr, 6)
	for i, p := range parts {
		if len(p) < 1 || len(p) > 2 {
			return nil, fmt.Errorf("invalid MAC address %q: group %d must have one or two hex digits", s, i+1)
		}
		v, err := strconv.ParseUint(p, 16, 8)
		if err != nil {
			return nil, fmt.Errorf("invalid MAC address %q: group %d is not hexadecimal", s, i+1)
		}
		mac[i] = byte(v)
	}
	return mac, nil
}

// Short prints a MAC in the illumos short form, without leading zeros
// ("2:8:20:aa:bb:1").
func Short(mac net.HardwareAddr) string {
	parts := make([]string, len(mac))
	for i, b := range mac {
		parts[i] = strconv.FormatUint(uint64(b), 16)
	}
	return strings.Join(parts, ":")
}

// IsUnicast reports whether mac is an individual (not group) address.
func IsUnicast(mac net.HardwareAddr) bool { return len(mac) == 6 && mac[0]&1 == 0 }

// IsZero reports whether mac is 00:00:00:00:00:00.
func IsZero(mac net.HardwareAddr) bool {
	for _, b := range mac {
		if b != 0 {
			return false
		}
	}
	return true
}

// RandomMAC returns a random unicast MAC with the given prefix (at most
// five bytes). The illumos default prefix for VNICs is 2:8:20, which is
// locally administered.
func RandomMAC(prefix []byte) net.HardwareAddr {
	mac := make(net.HardwareAddr, 6)
	rand.Read(mac)
	copy(mac, prefix)
	if len(prefix) == 0 {
		mac[0] = mac[0]&^1 | 2 // unicast, locally administered
	}
	return mac
}

// DefaultPrefix is the prefix of automatically chosen VNIC MACs.
var DefaultPrefix = []byte{0x02, 0x08, 0x20}
