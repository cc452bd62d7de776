package kernel

import (
	"encoding/binary"
	"fmt"
	"overlaynet/ether"
	"sort"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// DHCPv4 redirection on the kernel data path, in the bridge's own
// netfilter hook (this kernel has no tc flower or pedit): per overlay a
// chain in overlayd's bridge-family table that, for frames entering a
// bridge through one of overlayd's VNIC ports,
//   - rewrites a client's broadcast to servers (UDP 68 -> 67) to the
//     unicast MAC its dhcp-proxy names, which the vxlan device then
//     forwards like any unicast;
//   - rewrites a server's broadcast reply (UDP 67 -> 68) to the client
//     hardware address the reply carries (chaddr), since a dynamic overlay
//     does not flood.

const nftTable = "overlayd"

func (ov *overlay) nftChainName() string { return "dhcp-" + ov.brName }

// SetDHCPRedirect implements datapath.DHCPRedirector.
func (ov *overlay) SetDHCPRedirect(client, server ether.MAC) {
	ov.mu.Lock()
	defer ov.mu.Unlock()
	if ov.dhcp == nil {
		ov.dhcp = map[ether.MAC]ether.MAC{}
	}
	if ov.dhcp[client] == server {
		return
	}
	ov.dhcp[client] = server
	if err := ov.syncDHCP(); err != nil {
		ov.log.Warn("cannot install DHCP redirection", "err", err)
	}
}

// syncDHCP rebuilds the overlay's chain from ov.dhcp. Called with ov.mu.
func (ov *overlay) syncDHCP() error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyBridge, Name: nftTable})
	ch := c.AddChain(&nftables.Chain{Name: ov.nftChainName(), Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(-300)})
	c.FlushChain(ch)
	udpTo := func(sport, dport uint16) []expr.Any {
		return []expr.Any{
			// Only frames entering through overlayd's own VNIC ports
			// ("ovp..."): this kernel cannot match the bridge itself
			// (no meta ibrname), and other bridges are not ours.
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte("ovp")},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 0, Len: 6},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 12, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x08, 0x00}},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, sport), dport)},
		}
	}
	clients := make([]ether.MAC, 0, len(ov.dhcp))
	for cl := range ov.dhcp {
		clients = append(clients, cl)
	}
	sort.Slice(clients, func(i, j int) bool { return string(clients[i][:]) < string(clients[j][:]) })
	for _, cl := range clients {
		server := ov.dhcp[cl]
		exprs := append(udpTo(68, 67),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 6, Len: 6},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: cl[:]},
			&expr.Immediate{Register: 1, Data: server[:]},
			&expr.Payload{OperationType: expr.PayloadWrite, SourceRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 0, Len: 6},
		)
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: exprs})
	}
	// Replies broadcast by a server go to the client they name (chaddr,
	// at byte 28 of the BOOTP message after the 8-byte UDP header).
	reply := append(udpTo(67, 68),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 8 + 28, Len: 6},
		&expr.Payload{OperationType: expr.PayloadWrite, SourceRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 0, Len: 6},
	)
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: reply})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	return nil
}
