// Package plugins links in every encapsulation and search plugin. The
// programs import it; a new plugin adds its folder here.
package plugins

import (
	_ "overlaynet/encap/vxlan"   // VXLAN encapsulation
	_ "overlaynet/search/direct" // point-to-point search
	_ "overlaynet/search/files"  // MAC map from a JSON file
	_ "overlaynet/search/svp"    // mapping server over SVP (portolan)
)
