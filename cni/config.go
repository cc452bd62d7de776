// Package cni is overlayd's CNI plugin: it attaches a container to an
// overlay, as SmartOS does from a VM's NIC spec. ADD has overlayd create
// a VNIC on the overlay (creating the overlay from a SmartOS rule when
// the config names one), moves the VNIC's interface into the container's
// network namespace under the name the runtime asks for, and applies what
// the IPAM plugin gives. DEL deletes the VNIC, whatever became of the
// namespace or of overlayd in between.
package cni

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"

	"github.com/containernetworking/cni/pkg/types"

	"overlaynet/admin"
	"overlaynet/ether"
)

// NetConf is the plugin's network configuration.
type NetConf struct {
	types.PluginConf
	// Overlay is an overlay's name, or a SmartOS rule and vnetid
	// ("rule/2233", from overlayd's --rules file), which overlayd creates
	// on first use as 'overlayadm create-vnic -l rule/N' does.
	Overlay string `json:"overlay"`
	// Socket is overlayd's admin socket (default admin.DefaultSocket).
	Socket string `json:"socket,omitempty"`
	// MAC fixes the VNIC's MAC address; by default overlayd picks one.
	// The runtime's "mac" capability (runtimeConfig) wins over it.
	MAC string `json:"mac,omitempty"`
	// MTU sets the VNIC's MTU; by default it is the overlay's.
	MTU int `json:"mtu,omitempty"`
	// VLAN puts the VNIC on a VLAN of the overlay (1-4094).
	VLAN int `json:"vlan,omitempty"`

	// IsGateway gives this host an interface on the overlay, the
	// network's gateway VNIC, with the gateway addresses IPAM gives, and
	// turns on IP forwarding, as the bridge plugin's isGateway does its
	// bridge: the host then routes to its containers, so that portmap's
	// DNAT reaches them and they reach past the overlay through it.
	IsGateway bool `json:"isGateway,omitempty"`

	// Portolan, for an svp overlay, registers the container's MAC and
	// addresses with portolan's network API at ADD and removes them at
	// DEL, so that other hosts find it.
	Portolan *PortolanConf `json:"portolan,omitempty"`

	RuntimeConfig struct {
		MAC string `json:"mac,omitempty"`
	} `json:"runtimeConfig,omitempty"`
}

// PortolanConf is where and as whom to register VNICs with portolan.
type PortolanConf struct {
	// URL is portolan's network API (portolan serve --api), such as
	// https://portolan.example:1297.
	URL string `json:"url"`
	// TokenFile holds the API token (portolan serve --api-token-file).
	TokenFile string `json:"tokenFile"`
	// Host is this host's ID in portolan (portolan add-host).
	Host string `json:"host"`
}

// overlayRef is what an overlay may be called: a name, or rule/vnetid.
var overlayRef = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.]*(/[0-9]+)?$`)

// configError is a CNI error for a bad network configuration.
func configError(format string, a ...any) *types.Error {
	return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf(format, a...), "")
}

// parseConf decodes and checks a network configuration. Every error
// names the field and says what it should be.
func parseConf(stdin []byte) (*NetConf, error) {
	conf := &NetConf{}
	if err := json.Unmarshal(stdin, conf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("network configuration is not valid JSON: %v", err), "")
	}
	if conf.Overlay == "" {
		return nil, configError(`"overlay" is missing: name an overlay (as in overlayadm show-overlay) or a rule and vnetid such as "rule/2233"`)
	}
	if !overlayRef.MatchString(conf.Overlay) {
		return nil, configError(`"overlay" %q is not an overlay name or rule/vnetid: a name is letters, digits, '_' and '.', starting with a letter`, conf.Overlay)
	}
	if conf.MTU != 0 && (conf.MTU < 576 || conf.MTU > 65535) {
		return nil, configError(`"mtu" %d is out of range 576-65535 (leave it out for the overlay's MTU)`, conf.MTU)
	}
	if conf.VLAN < 0 || conf.VLAN > 4094 {
		return nil, configError(`"vlan" %d is out of range 1-4094 (0 or absent: no VLAN)`, conf.VLAN)
	}
	for field, mac := range map[string]string{`"mac"`: conf.MAC, `"runtimeConfig": "mac"`: conf.RuntimeConfig.MAC} {
		if mac == "" {
			continue
		}
		m, err := ether.ParseMAC(mac)
		if err != nil || !ether.IsUnicast(m) || ether.IsZero(m) {
			return nil, configError(`%s %q is not a unicast MAC address (like 02:08:20:aa:bb:cc)`, field, mac)
		}
	}
	if conf.IsGateway && (conf.IPAM.Type == "" || conf.IPAM.Type == "dhcp") {
		return nil, configError(`"isGateway" needs an "ipam" section that gives this host's gateway address (host-local: "gateway" in a range; not dhcp, whose router is another host)`)
	}
	if p := conf.Portolan; p != nil {
		if u, err := url.Parse(p.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, configError(`"portolan": "url" %q is not an http or https URL (portolan serve --api's address)`, p.URL)
		}
		if p.TokenFile == "" {
			return nil, configError(`"portolan": "tokenFile" is missing: the file holding the API token (portolan serve --api-token-file)`)
		}
		if p.Host == "" {
			return nil, configError(`"portolan": "host" is missing: this host's ID in portolan (portolan show-hosts)`)
		}
	}
	if conf.Socket == "" {
		conf.Socket = admin.DefaultSocket
	}
	return conf, nil
}

// mac is the MAC the VNIC should have: the runtime's, the config's, or
// "" for overlayd's choice.
func (c *NetConf) mac() string {
	if c.RuntimeConfig.MAC != "" {
		return c.RuntimeConfig.MAC
	}
	return c.MAC
}

// vnicPrefix is the start of the names of the VNICs of one network: "c"
// and a hash of the network's name. GC removes only those.
func vnicPrefix(network string) string {
	h := sha256.Sum256([]byte(network))
	return "c" + hex.EncodeToString(h[:])[:4]
}

// gatewayName is the name of a network's gateway VNIC on this host: "g"
// and the hash of vnicPrefix, which GC leaves alone.
func gatewayName(network string) string {
	return "g" + vnicPrefix(network)[1:]
}

// vnicName is the name of the VNIC of one attachment (container and
// interface) to a network: 15 characters, overlayd's longest, found
// again from the attachment alone (DEL, CHECK, GC keep no state).
func vnicName(network, containerID, ifName string) string {
	h := sha256.Sum256([]byte(containerID + "/" + ifName))
	return vnicPrefix(network) + hex.EncodeToString(h[:])[:10]
}
