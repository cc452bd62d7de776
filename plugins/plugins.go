// Package plugins links in every data path, encapsulation and search
// plugin. The programs import it; a new one adds its folder here.
package plugins

import (
	_ "overlaynet/datapath/kernel"    // the Linux vxlan driver and a bridge
	_ "overlaynet/datapath/userspace" // TAP devices and UDP sockets, in Go
	_ "overlaynet/encap/geneve"       // Geneve encapsulation
	_ "overlaynet/encap/nvgre"        // NVGRE encapsulation
	_ "overlaynet/encap/vxlan"        // VXLAN encapsulation
	_ "overlaynet/search/direct"      // point-to-point search
	_ "overlaynet/search/evpn"        // BGP EVPN (GoBGP)
	_ "overlaynet/search/files"       // MAC map from a JSON file
	_ "overlaynet/search/multicast"   // a multicast group, and learning
	_ "overlaynet/search/svp"         // mapping server over SVP (portolan)
)
