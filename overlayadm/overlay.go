package overlayadm

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"overlaynet/admin"
	"overlaynet/encap"
	"overlaynet/ofmt"
	"overlaynet/overlay"
	"overlaynet/search"
)

func createOverlayCmd(e *env) *cobra.Command {
	var req overlay.CreateOverlayRequest
	var props []string
	c := &cobra.Command{
		Use:   "create-overlay [-t] -e <encap> -s <search> -v <vnetid> [-p <prop>=<value>[,...]]... <overlay>",
		Short: "create an overlay",
		Long: `Create an overlay: a virtual switch spanning hosts.

-e names the encapsulation (` + strings.Join(encap.Names(), ", ") + `), -s the search plugin
(` + strings.Join(search.Names(), ", ") + `), -v the virtual network id (0-16777215: VXLAN's and
Geneve's VNI, NVGRE's VSID). A host holds one overlay per encapsulation
and vnetid.

vxlan (RFC 7348) is UDP, port 4789 by default. geneve (RFC 8926) is UDP,
port 6081 by default; it sends no options, skips the options it receives
by their length, and drops (and counts, drop-critical-option) a packet
marked critical. nvgre (RFC 7637) is GRE straight over IP, protocol 47:
no port anywhere, so direct/dest_port is not asked for, a files entry
needs no "port", and svp answers are used without theirs. The source port
of UDP encapsulations follows the inner flow, for the underlay's ECMP.
The kernel data path carries vxlan only: it refuses geneve and nvgre,
naming the kernel device it lacks; the userspace path carries all three.

Properties (-p, repeatable, or comma-joined), by encapsulation and search
plugin:
` + overlay.PropertyHelp() + `

direct sends every frame that is not for a local VNIC, broadcasts included,
to its one peer. files looks each destination MAC up in its map (the
illumos overlay_files format), answers ARP and IPv6 neighbour
solicitations from the map's "arp" and "ndp" addresses, redirects DHCPv4
broadcasts to a "dhcp-proxy" MAC, and never floods broadcasts over the
underlay; it rereads the file when it changes. svp asks a mapping server
(portolan, or Triton's) where each MAC and IP is, over SVP, and follows
the server's log of changes; the overlay is DEGRADED, with the reason,
while no server answers. multicast sends broadcast, multicast and
unknown-unicast frames to the group multicast/dest_ip on the listen port,
joined (IGMP, MLD) on the listen address's interface, and learns where
each remote MAC is from the frames that arrive (multicast/ageing,
multicast/max_learned), as the Linux vxlan driver's group mode, with which
it interoperates; show-overlay -t shows the group and what was learned.
evpn is a VTEP of a BGP EVPN fabric (FRR, switches): it advertises a
type-3 route per overlay and a type-2 route per local VNIC to its peers
(evpn/peers, joined by '+'; evpn/asn), learns remote VNICs from their
type-2 routes and the flood list from their type-3 routes, and is
DEGRADED, naming the peers, while no BGP session is up.

show-overlay lists every property with its permissions: besides the ones
above, vnetid (-v), and the read-only encap (-e), search (-s), varpd/id
(assigned by overlayd) and datapath (fixed at creation).

Overlay names use letters, digits, '_' and '.', start with a letter, and
have at most 31 characters. Without -t the overlay is persistent.`,
		Example: `  overlayadm create-overlay -e vxlan -s direct -v 42 \
      -p vxlan/listen_ip=192.0.2.1 \
      -p direct/dest_ip=192.0.2.2,direct/dest_port=4789 overlay0
  overlayadm create-overlay -e vxlan -s files -v 43 \
      -p vxlan/listen_ip=192.0.2.1 -p files/config=/etc/overlay/overlay1.json overlay1
  overlayadm create-overlay -e geneve -s direct -v 44 \
      -p geneve/listen_ip=192.0.2.1 \
      -p direct/dest_ip=192.0.2.2,direct/dest_port=6081 overlay2
  overlayadm create-overlay -e nvgre -s direct -v 45 \
      -p nvgre/listen_ip=192.0.2.1 -p direct/dest_ip=192.0.2.2 overlay3
  overlayadm create-overlay -e vxlan -s multicast -v 46 \
      -p vxlan/listen_ip=192.0.2.1 -p multicast/dest_ip=239.1.1.1 overlay4
  overlayadm create-overlay -e vxlan -s evpn -v 47 \
      -p vxlan/listen_ip=192.0.2.1 -p evpn/asn=65000,evpn/peers=192.0.2.10 overlay5`,
		Args: oneOperand("overlay"),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case req.VNetID == "":
				return usagef("missing required virtual network id (-v)")
			case req.Encap == "":
				return usagef("missing required encapsulation plugin (-e)")
			case req.Search == "":
				return usagef("missing required search plugin (-s)")
			}
			if _, err := strconv.ParseUint(req.VNetID, 10, 64); err != nil {
				return usagef("invalid virtual network id (-v) %q: want a decimal number, for VXLAN from 0 to 16777215", req.VNetID)
			}
			var err error
			if req.Props, err = assignments(props); err != nil {
				return err
			}
			req.Name = args[0]
			return e.call(admin.MethodCreateOverlay, req, nil)
		},
	}
	f := c.Flags()
	f.BoolVarP(&req.Temporary, "temporary", "t", false, "do not keep the overlay across a restart")
	f.StringVarP(&req.Encap, "encap", "e", "", "encapsulation plugin")
	f.StringVarP(&req.Search, "search", "s", "", "search plugin")
	f.StringVarP(&req.VNetID, "vnetid", "v", "", "virtual network id")
	f.StringArrayVarP(&props, "prop", "p", nil, "property assignments <prop>=<value>[,...]")
	return c
}

func deleteOverlayCmd(e *env) *cobra.Command {
	var temporary bool
	c := &cobra.Command{
		Use:   "delete-overlay [-t] <overlay>",
		Short: "delete an overlay",
		Long: `Delete an overlay. It must have no VNICs left; delete them first.
With -t only the running overlay is deleted: it comes back when overlayd
restarts. Without -t it is also removed from the saved configuration.`,
		Args: oneOperand("overlay"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.call(admin.MethodDeleteOverlay, admin.NameParams{Name: args[0], Temporary: temporary}, nil)
		},
	}
	c.Flags().BoolVarP(&temporary, "temporary", "t", false, "delete only the running overlay")
	return c
}

func setLinkpropCmd(e *env) *cobra.Command {
	var props []string
	c := &cobra.Command{
		Use:   "set-linkprop -p <prop>=<value>[,...] <overlay>|<vnic>",
		Short: "change read-write properties of an overlay or a VNIC",
		Long: `Change read-write properties (PERM rw in show-overlay) of a running overlay.
All given properties take effect together, or none does. Read-only
properties (encap, search, varpd/id, datapath) cannot be changed: delete
the overlay and create it again for another encapsulation, search plugin
or data path.

When the mtu changes, the VNICs that follow the overlay's take it, also in
the network namespaces they were moved into; one overlayd may not enter
(it drops CAP_SYS_ADMIN unless --keep-privileges) keeps its MTU, and the
command then fails naming it, with the change made: show-vnic shows such
a VNIC's MTU as 1400(want 1300).

On a VNIC (a name no overlay has) the one changeable property is
protection: mac-nospoof (the default) drops and counts (drop-spoofed) the
frames the VNIC sends from a source MAC other than its own; none lets
them through. The change is immediate and, for a persistent VNIC, saved.`,
		Example: `  overlayadm set-linkprop -p direct/dest_ip=192.0.2.3 overlay0
  overlayadm set-linkprop -p protection=none vnic0`,
		Args: oneOperand("overlay"),
		RunE: func(cmd *cobra.Command, args []string) error {
			as, err := someAssignments(props)
			if err != nil {
				return err
			}
			return e.call(admin.MethodSetProps, overlay.SetPropsRequest{Name: args[0], Props: as}, nil)
		},
	}
	c.Flags().StringArrayVarP(&props, "prop", "p", nil, "property assignments <prop>=<value>[,...]")
	return c
}

func modifyOverlayCmd(e *env) *cobra.Command {
	var req overlay.ModifyRequest
	c := &cobra.Command{
		Use:   "modify-overlay -d <mac> | -f | -s <mac>=<ip>:<port> <overlay>",
		Short: "edit the target table of a dynamic overlay",
		Long: `Edit the target table of an overlay with a dynamic search plugin (files):
the cache of MAC -> underlay destination answers (show-overlay -t).

-d <mac>              remove one entry; the next frame for the MAC is looked
                      up again
-f                    flush the whole table
-s <mac>=<ip>:<port>  set an entry by hand; IPv6 as [<ipv6>]:<port>;
   <mac>=drop         or drop every frame for the MAC

Entries set by hand are not kept across a restart of overlayd, and the
plugin may replace them when its answer changes. Point-mode overlays
(direct) have no target table.`,
		Example: `  overlayadm modify-overlay -s 2:8:20:aa:bb:1=192.0.2.7:4789 overlay1
  overlayadm modify-overlay -s 2:8:20:aa:bb:2=[2001:db8::7]:4789 overlay1
  overlayadm modify-overlay -d 2:8:20:aa:bb:1 overlay1
  overlayadm modify-overlay -f overlay1`,
		Args: oneOperand("overlay"),
		RunE: func(cmd *cobra.Command, args []string) error {
			n := 0
			for _, given := range []bool{req.Delete != "", req.Flush, req.Set != ""} {
				if given {
					n++
				}
			}
			switch {
			case n == 0:
				return usagef("need one of -d, -f and -s")
			case n > 1:
				return usagef("only one of -d, -f and -s may be used")
			}
			req.Name = args[0]
			return e.call(admin.MethodModify, req, nil)
		},
	}
	f := c.Flags()
	f.StringVarP(&req.Delete, "delete", "d", "", "remove the entry of this MAC")
	f.BoolVarP(&req.Flush, "flush", "f", false, "flush the target table")
	f.StringVarP(&req.Set, "set", "s", "", "set an entry: <mac>=<ip>:<port> or <mac>=drop")
	return c
}

func refreshOverlayCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "refresh-overlay [<overlay>]",
		Short: "reload a search plugin's configuration",
		Long: `Make the search plugin of the named overlay, or of every overlay, reload its
configuration now: the files plugin rereads its file. (It also rereads it by
itself when the file changes, and overlayd refreshes every overlay on
SIGHUP.) A file that does not parse is reported here with its path, line
and column; the previous map stays in force and the overlay shows DEGRADED
until a good file is loaded.`,
		Args: optionalOperand("overlay"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.call(admin.MethodRefresh, admin.NameParams{Name: first(args)}, nil)
		},
	}
}

var (
	propFields   = []ofmt.Field{{Name: "LINK", Width: 19}, {Name: "PROPERTY", Width: 19}, {Name: "PERM", Width: 5}, {Name: "REQ", Width: 4}, {Name: "VALUE", Width: 11}, {Name: "DEFAULT", Width: 10}, {Name: "POSSIBLE", Width: 10}, {Name: "SOURCE", Width: 8}}
	faultFields  = []ofmt.Field{{Name: "LINK", Width: 20}, {Name: "STATUS", Width: 9}, {Name: "DETAILS", Width: 52}}
	targetFields = []ofmt.Field{{Name: "LINK", Width: 20}, {Name: "TARGET", Width: 18}, {Name: "DESTINATION", Width: 42}}
	statFields   = []ofmt.Field{{Name: "LINK", Width: 20}, {Name: "STATISTIC", Width: 20}, {Name: "VALUE", Width: 20}}
)

func showOverlayCmd(e *env) *cobra.Command {
	var fault, targets, stats, parsable bool
	var output string
	c := &cobra.Command{
		Use:   "show-overlay [-f | -t | -s] [-p] [-o <field>,...] [<overlay>]",
		Short: "show overlays: properties, status, targets or statistics",
		Long: `Show the named overlay, or all overlays.

By default one row per property:
  LINK PROPERTY PERM REQ VALUE DEFAULT POSSIBLE SOURCE
PERM is rw or r-, REQ y when required; -- marks a missing value. SOURCE
says where a read-write value came from: set (given at creation or by
set-linkprop), site (a site default, set-default, when the overlay was
created), default (the built-in default).

-f (--fault)     LINK STATUS DETAILS: ONLINE, or DEGRADED with the reason.
-t (--targets)   LINK TARGET DESTINATION: the target table. A point-mode
                 overlay shows one entry, *:*:*:*:*:*, its one destination.
-s (--stats)     LINK STATISTIC VALUE: the overlay's counters (frames and
                 bytes in and out, local-switched, encapsulated,
                 decapsulated, lookups, and drops by reason).

-o selects fields (case-insensitive, or "all"); -p prints them
':'-separated without a header, with ':' and '\' escaped by '\'. -p needs -o.`,
		Example: `  overlayadm show-overlay overlay0
  overlayadm show-overlay -p -o property,value overlay0
  overlayadm show-overlay -f`,
		Args: optionalOperand("overlay"),
		RunE: func(cmd *cobra.Command, args []string) error {
			n := 0
			for _, b := range []bool{fault, targets, stats} {
				if b {
					n++
				}
			}
			if n > 1 {
				return usagef("only one of -f, -t and -s may be used")
			}
			name := first(args)
			switch {
			case fault:
				return showFault(e, name, output, parsable)
			case targets:
				return showTargets(e, name, output, parsable)
			case stats:
				return showStats(e, name, output, parsable)
			}
			return showProps(e, name, output, parsable)
		},
	}
	f := c.Flags()
	f.BoolVarP(&fault, "fault", "f", false, "show status and degradation reason")
	f.BoolVarP(&targets, "targets", "t", false, "show the target table")
	f.BoolVarP(&stats, "stats", "s", false, "show statistics")
	f.BoolVarP(&parsable, "parsable", "p", false, "machine-parsable output (needs -o FIELD,... or -o all)")
	f.StringVarP(&output, "output", "o", "", "fields to print, comma-separated, or all")
	return c
}

func printer(e *env, fields []ofmt.Field, output string, parsable bool) (*ofmt.Printer, error) {
	p, err := ofmt.New(e.stdout, prefixWriter{e.stderr}, fields, output, parsable)
	if err != nil {
		return nil, usagef("%v", err)
	}
	return p, nil
}

// row is one output row: field name to value.
type row = map[string]string

// show fetches a list of T with one admin call and prints the rows that
// rows makes of each item.
func show[T any](e *env, fields []ofmt.Field, output string, parsable bool, method string, params any, rows func(T) []row) error {
	p, err := printer(e, fields, output, parsable)
	if err != nil {
		return err
	}
	var items []T
	if err := e.call(method, params, &items); err != nil {
		return err
	}
	for _, it := range items {
		for _, r := range rows(it) {
			p.Row(func(f string) string { return r[f] })
		}
	}
	p.Flush()
	return nil
}

func showProps(e *env, name, output string, parsable bool) error {
	return show(e, propFields, output, parsable, admin.MethodShowOverlay, admin.NameParams{Name: name},
		func(ov overlay.OverlayInfo) []row {
			var rows []row
			for _, pr := range ov.Props {
				req := "-"
				if pr.Required {
					req = "y"
				}
				rows = append(rows, row{"LINK": ov.Name, "PROPERTY": pr.Name, "PERM": pr.Perm,
					"REQ": req, "VALUE": pr.Value, "DEFAULT": pr.Default, "POSSIBLE": pr.Possible, "SOURCE": pr.Source})
			}
			return rows
		})
}

func showFault(e *env, name, output string, parsable bool) error {
	return show(e, faultFields, output, parsable, admin.MethodShowOverlay, admin.NameParams{Name: name},
		func(ov overlay.OverlayInfo) []row {
			details := ov.Details
			if details == "" {
				details = "-"
			}
			return []row{{"LINK": ov.Name, "STATUS": ov.Status, "DETAILS": details}}
		})
}

func showTargets(e *env, name, output string, parsable bool) error {
	return show(e, targetFields, output, parsable, admin.MethodShowTargets, admin.NameParams{Name: name},
		func(t overlay.TargetInfo) []row {
			return []row{{"LINK": t.Overlay, "TARGET": t.Target, "DESTINATION": t.Destination}}
		})
}

func showStats(e *env, name, output string, parsable bool) error {
	return show(e, statFields, output, parsable, admin.MethodShowStats, admin.NameParams{Name: name},
		func(s overlay.StatsInfo) []row { return statRows("LINK", s.Overlay, s.Stats) })
}

// statRows makes one row per counter, keyed by the object's field.
func statRows(keyField, key string, stats []overlay.Stat, extra ...string) []row {
	rows := make([]row, len(stats))
	for i, st := range stats {
		rows[i] = row{keyField: key, "STATISTIC": st.Name, "VALUE": fmt.Sprint(st.Value)}
		if st.Unavailable {
			rows[i]["VALUE"] = "" // "--" for people, empty with -p
		}
		for j := 0; j+1 < len(extra); j += 2 {
			rows[i][extra[j]] = extra[j+1]
		}
	}
	return rows
}

var listenerFields = []ofmt.Field{{Name: "LISTEN", Width: 24}, {Name: "OVERLAYS", Width: 24}, {Name: "STATISTIC", Width: 20}, {Name: "VALUE", Width: 20}, {Name: "NETNS", Width: 16}}

func showListenerCmd(e *env) *cobra.Command {
	var parsable bool
	var output string
	c := &cobra.Command{
		Use:   "show-listener [-p] [-o <field>,...]",
		Short: "show the underlay addresses overlayd receives on",
		Long: `Show each underlay address (listen_ip:listen_port) overlayd receives on,
the overlays sharing it, and its counters: packets received, and packets
dropped before they reach an overlay (too short, bad header, a Geneve
option marked critical, unknown VNI). NETNS is the network namespace of
an underlay that is not overlayd's own (underlay_netns).

  LISTEN OVERLAYS STATISTIC VALUE NETNS`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(e, listenerFields, output, parsable, admin.MethodShowListeners, nil,
				func(l overlay.ListenerInfo) []row {
					return statRows("LISTEN", l.Listen, l.Stats, "OVERLAYS", strings.Join(l.Overlays, ","), "NETNS", l.NetNS)
				})
		},
	}
	c.Flags().BoolVarP(&parsable, "parsable", "p", false, "machine-parsable output (needs -o FIELD,... or -o all)")
	c.Flags().StringVarP(&output, "output", "o", "", "fields to print, comma-separated, or all")
	return c
}

// prefixWriter marks warnings as overlayadm's.
type prefixWriter struct{ w io.Writer }

func (p prefixWriter) Write(b []byte) (int, error) {
	if _, err := io.WriteString(p.w, "overlayadm: "); err != nil {
		return 0, err
	}
	return p.w.Write(b)
}
