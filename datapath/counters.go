package datapath

import "sync/atomic"

// Counter indexes the per-overlay counters both data paths keep.
type Counter int

// Per-overlay counters (SPEC section 2, Statistics). "In" is traffic
// entering the overlay switch from local VNICs, "out" is traffic the
// switch delivers to local VNICs.
const (
	InFrames Counter = iota
	InBytes
	OutFrames
	OutBytes
	LocalSwitched
	Encapsulated
	EncapBytes
	Decapsulated
	DecapBytes
	LookupsStarted
	LookupsAnswered
	LookupsDropped
	LookupsTimedOut
	QueueDrops

	// Drops, one counter per reason.
	DropMalformed  // a frame too short or unparsable
	DropMTU        // larger than the overlay MTU
	DropNoVNIC     // unicast from the underlay to a MAC no local VNIC has
	DropNoTarget   // no destination known for a non-local MAC
	DropVLAN       // a tagged frame from a VLAN VNIC, or a VLAN no VNIC is on
	DropSendError  // the underlay socket refused the packet
	DropVNICWrite  // the VNIC refused the frame (down, queue full)
	DropShort      // underlay packet shorter than the encapsulation header
	DropBadHeader  // encapsulation header invalid (VXLAN: I flag not set)
	DropCritical   // a Geneve option marked critical (C bit): none is understood
	DropUnknownVNI // no overlay with that VNI on the listen address
	DropAdmin      // the target entry says drop (set by an operator)
	DropTableFull  // the target table is full
	DropLookups    // too many lookups outstanding
	DropSpoofed    // a VNIC sent from a MAC not its own (mac-nospoof)
	ProxyARP       // ARP requests answered
	ProxyNDP       // neighbour solicitations answered
	ProxyDHCP      // DHCP broadcasts redirected to a unicast MAC
	ProxyUnanswered
	numCounters
)

var counterNames = [numCounters]string{
	InFrames:        "in-frames",
	InBytes:         "in-bytes",
	OutFrames:       "out-frames",
	OutBytes:        "out-bytes",
	LocalSwitched:   "local-switched",
	Encapsulated:    "encapsulated",
	EncapBytes:      "encap-bytes",
	Decapsulated:    "decapsulated",
	DecapBytes:      "decap-bytes",
	LookupsStarted:  "lookups-started",
	LookupsAnswered: "lookups-answered",
	LookupsDropped:  "lookups-dropped",
	LookupsTimedOut: "lookups-timed-out",
	QueueDrops:      "queue-drops",
	DropMalformed:   "drop-malformed",
	DropMTU:         "drop-mtu",
	DropNoVNIC:      "drop-no-vnic",
	DropNoTarget:    "drop-no-target",
	DropVLAN:        "drop-vlan",
	DropSendError:   "drop-send-error",
	DropVNICWrite:   "drop-vnic-write",
	DropShort:       "drop-short",
	DropBadHeader:   "drop-bad-header",
	DropCritical:    "drop-critical-option",
	DropUnknownVNI:  "drop-unknown-vni",
	DropAdmin:       "drop-admin",
	DropTableFull:   "drop-table-full",
	DropLookups:     "drop-lookup-limit",
	DropSpoofed:     "drop-spoofed",
	ProxyARP:        "proxy-arp",
	ProxyNDP:        "proxy-ndp",
	ProxyDHCP:       "proxy-dhcp",
	ProxyUnanswered: "proxy-unanswered",
}

func (c Counter) String() string { return counterNames[c] }

// Counters is a set of counters safe for concurrent use.
type Counters struct {
	v [numCounters]atomic.Uint64
}

// Add adds n to counter c.
func (cs *Counters) Add(c Counter, n uint64) { cs.v[c].Add(n) }

// Inc adds one to counter c.
func (cs *Counters) Inc(c Counter) { cs.v[c].Add(1) }

// Snapshot returns the listed counters in order; with none listed, all.
func (cs *Counters) Snapshot(which ...Counter) Stats {
	if len(which) == 0 {
		for c := Counter(0); c < numCounters; c++ {
			which = append(which, c)
		}
	}
	out := make(Stats, len(which))
	for i, c := range which {
		out[i] = Stat{Name: c.String(), Value: cs.v[c].Load()}
	}
	return out
}

// ListenerCounters are the counters a listener reports.
var ListenerCounters = []Counter{Decapsulated, DecapBytes, DropShort, DropBadHeader, DropCritical, DropUnknownVNI}

// OverlayCounters are the counters a data path keeps per overlay.
var OverlayCounters = []Counter{
	InFrames, InBytes, OutFrames, OutBytes, LocalSwitched,
	Encapsulated, EncapBytes, Decapsulated, DecapBytes, QueueDrops,
	DropMalformed, DropMTU, DropNoVNIC, DropNoTarget, DropAdmin, DropTableFull, DropLookups,
	DropVLAN, DropSendError, DropVNICWrite, DropSpoofed,
}

// LookupCounters are the counters the lookup engine above the data path
// keeps per overlay.
var LookupCounters = []Counter{
	LookupsStarted, LookupsAnswered, LookupsDropped, LookupsTimedOut,
	ProxyARP, ProxyNDP, ProxyDHCP, ProxyUnanswered,
}
