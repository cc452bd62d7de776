package kernel

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The source MAC check (mac-nospoof) on the kernel data path: per
// overlay a chain in overlayd's bridge-family table, hooked before the
// DHCP chain and before the bridge learns anything, with one rule per
// protected VNIC:
//
//	iifname <its bridge port> ether saddr != <its MAC> counter name spoof-<bridge> drop
//
// The rules share a named counter object, which outlives the rebuilds of
// the chain (and overlayd itself), so drop-spoofed never goes backwards.

func (ov *overlay) spoofChainName() string { return "spoof-" + ov.brName }

// spoofPriority runs the check before the DHCP chain's rewrites (-300).
const spoofPriority = -350

// syncSpoof rebuilds the overlay's source MAC chain from ov.vnics, in one
// transaction. With no protected VNIC there is no chain (its counter
// stays), so that an overlay without mac-nospoof works where nftables'
// bridge family does not. Called with ov.mu, or before the overlay is
// shared.
func (ov *overlay) syncSpoof() error {
	var protected []string
	for n, v := range ov.vnics {
		if v.noSpoof {
			protected = append(protected, n)
		}
	}
	slices.Sort(protected)
	c, err := nftables.New()
	if err != nil {
		if len(protected) == 0 {
			return nil
		}
		return fmt.Errorf("the source MAC check for %s needs nftables (or set protection=none on it): %w", strings.Join(protected, ", "), err)
	}
	if len(protected) == 0 {
		return ov.dropSpoofChain(c)
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyBridge, Name: nftTable})
	// Adding an existing counter leaves its value alone.
	c.AddObj(&nftables.CounterObj{Table: t, Name: ov.spoofChainName()})
	ch := c.AddChain(&nftables.Chain{Name: ov.spoofChainName(), Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(spoofPriority)})
	c.FlushChain(ch)
	for _, n := range protected {
		v := ov.vnics[n]
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(v.port)},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 6, Len: 6},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: slices.Clone(v.mac[:])},
			&expr.Objref{Type: int(nftables.ObjTypeCounter), Name: ov.spoofChainName()},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("install the source MAC check for %s (nftables chain %s in bridge table %s; it needs nftables' bridge family, or set protection=none on those VNICs): %w",
			strings.Join(protected, ", "), ov.spoofChainName(), nftTable, err)
	}
	return nil
}

// dropSpoofChain deletes the overlay's source MAC chain if it has one.
// Where nftables cannot even list chains, there is none to delete.
func (ov *overlay) dropSpoofChain(c *nftables.Conn) error {
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyBridge)
	if err != nil {
		ov.log.Debug("cannot list nftables chains; no source MAC chain to remove", "err", err)
		return nil
	}
	for _, ch := range chains {
		if ch.Table.Name == nftTable && ch.Name == ov.spoofChainName() {
			c.DelChain(ch)
			if err := c.Flush(); err != nil {
				return fmt.Errorf("remove the source MAC check (nftables chain %s), which no VNIC needs now: %w", ch.Name, err)
			}
		}
	}
	return nil
}

// ifname is an interface name as nftables compares it: NUL-padded to
// IFNAMSIZ, so that the match is exact, not a prefix.
func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

// spoofed reads the overlay's counter of frames dropped by the check.
func (ov *overlay) spoofed() uint64 {
	c, err := nftables.New()
	if err != nil {
		return 0
	}
	t := &nftables.Table{Family: nftables.TableFamilyBridge, Name: nftTable}
	o, err := c.GetObject(&nftables.CounterObj{Table: t, Name: ov.spoofChainName()})
	if err != nil {
		ov.log.Debug("cannot read the source MAC check's counter", "err", err)
		return 0
	}
	if co, ok := o.(*nftables.CounterObj); ok {
		return co.Packets
	}
	return 0
}

// deleteNft removes the overlay's chains and counter.
func (ov *overlay) deleteNft() {
	c, err := nftables.New()
	if err != nil {
		ov.log.Warn("cannot remove the overlay's nftables chains", "err", err)
		return
	}
	t := &nftables.Table{Family: nftables.TableFamilyBridge, Name: nftTable}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyBridge)
	if err != nil {
		ov.log.Warn("cannot list nftables chains", "err", err)
		return
	}
	for _, ch := range chains {
		if ch.Table.Name == nftTable && (ch.Name == ov.nftChainName() || ch.Name == ov.spoofChainName()) {
			c.DelChain(ch)
		}
	}
	if err := c.Flush(); err != nil {
		ov.log.Warn("cannot remove the overlay's nftables chains", "err", err)
		return
	}
	c.DeleteObject(&nftables.CounterObj{Table: t, Name: ov.spoofChainName()})
	if err := c.Flush(); err != nil {
		ov.log.Debug("cannot remove the source MAC check's counter", "err", err)
	}
}

// sweepNft deletes the chains and counters of bridges no overlay claims.
func sweepNft(claimed map[string]bool, log *slog.Logger) {
	c, err := nftables.New()
	if err != nil {
		log.Warn("cannot sweep nftables chains", "err", err)
		return
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyBridge)
	if err != nil {
		log.Warn("cannot list nftables chains", "err", err)
		return
	}
	var counters []string
	for _, ch := range chains {
		if ch.Table.Name != nftTable {
			continue
		}
		kind, br, ok := strings.Cut(ch.Name, "-")
		if !ok || kind != "dhcp" && kind != "spoof" || claimed[br] {
			continue
		}
		c.DelChain(ch)
		if kind == "spoof" {
			counters = append(counters, ch.Name)
		}
		log.Info("removed an nftables chain no overlay claims", "chain", ch.Name)
	}
	if err := c.Flush(); err != nil {
		log.Warn("cannot remove nftables chains no overlay claims", "err", err)
		return
	}
	t := &nftables.Table{Family: nftables.TableFamilyBridge, Name: nftTable}
	for _, n := range counters {
		c.DeleteObject(&nftables.CounterObj{Table: t, Name: n})
	}
	if err := c.Flush(); err != nil {
		log.Warn("cannot remove nftables counters no overlay claims", "err", err)
	}
}
