package overlay

// The request and reply types below are the overlay core's API; the admin
// API carries them as JSON unchanged, so their field names are part of the
// admin protocol.

// Assignment is one "<prop>=<value>" given by an operator.
type Assignment struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// CreateOverlayRequest asks for a new overlay (create-overlay).
type CreateOverlayRequest struct {
	Name      string       `json:"name"`
	Encap     string       `json:"encap"`
	Search    string       `json:"search"`
	VNetID    string       `json:"vnetid"`
	Props     []Assignment `json:"props,omitempty"`
	Temporary bool         `json:"temporary,omitempty"`
}

// SetPropsRequest changes read-write properties (set-linkprop) of an
// overlay, or of a VNIC (protection).
type SetPropsRequest struct {
	Name  string       `json:"name"`
	Props []Assignment `json:"props"`
}

// CreateVNICRequest asks for a new VNIC (create-vnic).
type CreateVNICRequest struct {
	Name    string `json:"name"`
	Overlay string `json:"overlay"`
	// MAC is an address, "auto", "random" or "" (auto).
	MAC       string       `json:"mac,omitempty"`
	VLAN      uint16       `json:"vlan,omitempty"`
	Props     []Assignment `json:"props,omitempty"`
	Temporary bool         `json:"temporary,omitempty"`

	// adopt takes over a persistent VNIC left by an earlier overlayd
	// (restoring at startup), never set through the admin API.
	adopt bool
}

// PropInfo is one row of show-overlay.
type PropInfo struct {
	Name     string `json:"name"`
	Perm     string `json:"perm"`
	Required bool   `json:"required"`
	Value    string `json:"value"`
	Default  string `json:"default"`
	Possible string `json:"possible"`
	// Source says where a read-write property's value comes from:
	// "set" (by the operator), "site" (a site default, at creation),
	// "default" (the built-in default); "" when read-only or unset.
	Source string `json:"source,omitempty"`
}

// OverlayInfo describes one overlay.
type OverlayInfo struct {
	Name      string `json:"name"`
	Temporary bool   `json:"temporary"`
	Status    string `json:"status"`
	Details   string `json:"details"`
	// DegradedSince is when the overlay became DEGRADED (RFC 3339).
	DegradedSince string     `json:"degraded_since,omitempty"`
	Props         []PropInfo `json:"props"`
	VNICs         []string   `json:"vnics"`
}

// Status values.
const (
	StatusOnline   = "ONLINE"
	StatusDegraded = "DEGRADED"
)

// VNICInfo describes one VNIC (show-vnic).
type VNICInfo struct {
	Name    string `json:"name"`
	Overlay string `json:"overlay"`
	MAC     string `json:"mac"`
	VLAN    uint16 `json:"vlan"`
	MTU     int    `json:"mtu"`
	// WantMTU, when not 0, is the MTU the VNIC should have: its interface
	// (MTU) could not follow its overlay's (set-linkprop said why).
	WantMTU int `json:"want_mtu,omitempty"`
	// Protection is mac-nospoof or none.
	Protection string `json:"protection"`
	Temporary  bool   `json:"temporary"`
}

// TargetInfo is one target table entry (show-overlay -t).
type TargetInfo struct {
	Overlay string `json:"overlay"`
	// Target is a MAC in short form, or "*:*:*:*:*:*" for a point-mode
	// overlay's single destination.
	Target string `json:"target"`
	// Destination is "ip:port", "[ipv6]:port", "pending" or "drop".
	Destination string `json:"destination"`
}

// StatsInfo holds one overlay's counters (show-overlay -s).
type StatsInfo struct {
	Overlay string `json:"overlay"`
	Stats   []Stat `json:"stats"`
}

// Stat is one named counter.
type Stat struct {
	Name  string `json:"name"`
	Value uint64 `json:"value"`
	// Unavailable marks a counter the overlay's data path does not keep
	// (the kernel path has no per-frame counters of its own): shown as
	// "--", not as a 0 that would read as "nothing happened".
	Unavailable bool `json:"unavailable,omitempty"`
}

// ListenerInfo describes one underlay listen address (show-listener).
type ListenerInfo struct {
	Listen string `json:"listen"`
	// NetNS is the underlay's network namespace (underlay_netns), ""
	// for overlayd's own.
	NetNS    string   `json:"netns,omitempty"`
	Overlays []string `json:"overlays"`
	Stats    []Stat   `json:"stats"`
}

// ModifyRequest edits a dynamic overlay's target table (modify-overlay).
// Exactly one of Delete, Flush and Set is given.
type ModifyRequest struct {
	Name string `json:"name"`
	// Delete is a MAC whose entry is removed.
	Delete string `json:"delete,omitempty"`
	// Flush empties the table.
	Flush bool `json:"flush,omitempty"`
	// Set is "<mac>=<ip>:<port>", "<mac>=[<ipv6>]:<port>" or
	// "<mac>=drop".
	Set string `json:"set,omitempty"`
}
