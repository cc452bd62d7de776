// Command overlay-cni is overlayd's CNI plugin (package cni): install it
// in the runtime's CNI plugin directory (/opt/cni/bin or /usr/lib/cni)
// and name it as "type": "overlay-cni" in a network configuration.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"

	"overlaynet/cni"
)

func main() {
	skel.PluginMainFuncs(cni.Funcs(), cni.Versions, "overlay-cni: attaches containers to overlayd's overlays")
}
