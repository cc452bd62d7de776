package kernel

import (
	"encoding/binary"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"overlaynet/datapath"
	"overlaynet/encap"
	"overlaynet/ether"
)

// The vxlan forwarding database through raw netlink messages: the netlink
// library neither writes nor reads an entry's UDP port (NDA_PORT), and a
// destination host may receive VXLAN on another port than ours.

// fdbWrite adds (flags NLM_F_CREATE|NLM_F_REPLACE, or |NLM_F_APPEND for
// the all-zeros default entry) a forwarding entry mac -> dest.
func fdbWrite(flags, ifindex int, mac ether.MAC, dest encap.Dest) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWNEIGH, flags|unix.NLM_F_ACK)
	req.AddData(&netlink.Ndmsg{Family: unix.AF_BRIDGE, Index: uint32(ifindex),
		State: netlink.NUD_PERMANENT | netlink.NUD_NOARP, Flags: netlink.NTF_SELF})
	req.AddData(nl.NewRtAttr(netlink.NDA_LLADDR, mac[:]))
	req.AddData(nl.NewRtAttr(netlink.NDA_DST, dest.IP.Unmap().AsSlice()))
	if dest.Port != 0 {
		req.AddData(nl.NewRtAttr(netlink.NDA_PORT, nl.BEUint16Attr(dest.Port)))
	}
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

// fdbEntry is a forwarding entry with its port (0: the device's own).
type fdbEntry struct {
	neigh netlink.Neigh
	port  uint16
}

// fdbList lists a vxlan device's forwarding entries.
func fdbList(ifindex int) ([]fdbEntry, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETNEIGH, unix.NLM_F_DUMP)
	req.AddData(&netlink.Ndmsg{Family: unix.AF_BRIDGE, Index: uint32(ifindex)})
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWNEIGH)
	if err != nil {
		return nil, err
	}
	var out []fdbEntry
	for _, m := range msgs {
		n, err := netlink.NeighDeserialize(m)
		if err != nil || n.LinkIndex != ifindex {
			continue
		}
		e := fdbEntry{neigh: *n}
		if attrs, err := nl.ParseRouteAttr(m[(&netlink.Ndmsg{}).Len():]); err == nil {
			for _, a := range attrs {
				if a.Attr.Type == netlink.NDA_PORT && len(a.Value) == 2 {
					e.port = binary.BigEndian.Uint16(a.Value)
				}
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// target converts an entry with a destination to a target, with the
// device's own port when the entry names none.
func (e fdbEntry) target(defPort uint16) (datapath.Target, bool) {
	if e.neigh.IP == nil || len(e.neigh.HardwareAddr) != 6 {
		return datapath.Target{}, false
	}
	ip, _ := netip.AddrFromSlice(e.neigh.IP)
	port := e.port
	if port == 0 {
		port = defPort
	}
	return datapath.Target{MAC: ether.MAC(e.neigh.HardwareAddr), Dest: encap.Dest{IP: ip.Unmap(), Port: port}}, true
}

// fdbDelete deletes one forwarding entry, port included (the kernel
// matches the remote by address and port).
func fdbDelete(ifindex int, e fdbEntry) error {
	req := nl.NewNetlinkRequest(unix.RTM_DELNEIGH, unix.NLM_F_ACK)
	req.AddData(&netlink.Ndmsg{Family: unix.AF_BRIDGE, Index: uint32(ifindex), Flags: netlink.NTF_SELF})
	req.AddData(nl.NewRtAttr(netlink.NDA_LLADDR, []byte(e.neigh.HardwareAddr)))
	if e.neigh.IP != nil {
		ip, _ := netip.AddrFromSlice(e.neigh.IP)
		req.AddData(nl.NewRtAttr(netlink.NDA_DST, ip.Unmap().AsSlice()))
	}
	if e.port != 0 {
		req.AddData(nl.NewRtAttr(netlink.NDA_PORT, nl.BEUint16Attr(e.port)))
	}
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}
