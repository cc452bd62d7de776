package portolan

import (
	"net/netip"

	"overlaynet/ether"
	"overlaynet/portolan/store"
)

// Lookups is what the server answers the hot requests from: an in-memory
// index of the store (package index), kept current from its changes.
// Every method is safe for concurrent use and does no I/O.
type Lookups interface {
	// VL2 answers where a MAC lives.
	VL2(vnetid uint32, mac ether.MAC) (store.Host, bool)
	// VL3 answers which MAC holds an IP, and where that MAC lives.
	VL3(vnetid uint32, ip netip.Addr) (ether.MAC, store.Host, bool)
	// HostsFrom returns the hosts a connection from src may act for
	// (store.Store.HostsFrom).
	HostsFrom(src netip.Addr) []store.Host
	// LogSignal returns a channel closed when entries are next appended
	// to the log of the host with that underlay IP, once they are
	// committed to the store (the held LOG_REQ it wakes reads them
	// there). Take it before reading the log, so that no append between
	// the read and the wait is missed. Addresses come as the codec
	// decodes them: IPv4 plain, not IPv4-mapped. For an unknown host it
	// still returns a channel (nil would only mean waiting out the hold).
	LogSignal(hostIP netip.Addr) <-chan struct{}
}
