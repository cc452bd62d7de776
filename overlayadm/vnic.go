package overlayadm

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"overlaynet/admin"
	"overlaynet/ofmt"
	"overlaynet/overlay"
)

func createVNICCmd(e *env) *cobra.Command {
	var req overlay.CreateVNICRequest
	var vid string
	var props []string
	c := &cobra.Command{
		Use:   "create-vnic [-t] -l <overlay> [-m <mac>|auto|random] [-v <vid>] [-p <prop>=<value>[,...]] <vnic>",
		Short: "create a VNIC on an overlay",
		Long: `Create a VNIC: a network interface on an overlay. On this host it is a TAP
interface named <vnic> (at most 15 characters), created up in overlayd's
network namespace, with the VNIC's MAC and MTU; move it into a container's
namespace with 'ip link set <vnic> netns <ns>' and configure it there.

-l may also be <rule>/<vnetid>, SmartOS style: the overlay <rule><vnetid>
is created from the rule in overlayd's overlay_rules.json (--rules) if it
does not exist yet, then the VNIC on it.

-m sets the MAC (02:08:20:aa:bb:01 or 2:8:20:aa:bb:1); auto or random (the
default) picks a random MAC with prefix 2:8:20.
-v puts the VNIC on a VLAN (1-4094) inside the overlay: its user sends and
receives untagged frames; they carry the tag inside the overlay.
-p mtu=<n> sets the VNIC MTU, at most (and by default) the overlay's.
-p protection=mac-nospoof|none: with mac-nospoof (the default, as Triton
sets it on illumos) frames the VNIC sends from a source MAC other than its
own are dropped and counted (drop-spoofed in show-overlay -s); none lets
them through. set-linkprop -p protection=... <vnic> changes it at once.

Without -t the VNIC is persistent: saved, and its interface outlives
overlayd, so that a guest keeps it across a restart of the daemon (the new
overlayd takes it over, wherever it was moved). A VNIC on a temporary
overlay is temporary.`,
		Example: `  overlayadm create-vnic -l overlay0 vnic0
  overlayadm create-vnic -l overlay0 -m 2:8:20:0:0:1 -v 100 vnic1
  overlayadm create-vnic -l sdc_overlay/4242 vnic2`,
		Args: oneOperand("VNIC"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if req.Overlay == "" {
				return usagef("missing required overlay (-l)")
			}
			if vid != "" {
				v, err := strconv.ParseUint(vid, 10, 16)
				if err != nil || v < 1 || v > 4094 {
					return fmt.Errorf("invalid VLAN id %q: want 1-4094", vid)
				}
				req.VLAN = uint16(v)
			}
			var err error
			if req.Props, err = assignments(props); err != nil {
				return err
			}
			req.Name = args[0]
			var info overlay.VNICInfo
			return e.call(admin.MethodCreateVNIC, req, &info)
		},
	}
	f := c.Flags()
	f.BoolVarP(&req.Temporary, "temporary", "t", false, "do not keep the VNIC across a restart")
	f.StringVarP(&req.Overlay, "link", "l", "", "the overlay to create the VNIC on")
	f.StringVarP(&req.MAC, "mac-address", "m", "", "MAC address, auto or random")
	f.StringVarP(&vid, "vlan", "v", "", "VLAN id inside the overlay (1-4094)")
	f.StringArrayVarP(&props, "prop", "p", nil, "property assignments (mtu=<n>, protection=mac-nospoof|none)")
	return c
}

func deleteVNICCmd(e *env) *cobra.Command {
	var temporary bool
	c := &cobra.Command{
		Use:   "delete-vnic [-t] <vnic>",
		Short: "delete a VNIC",
		Long: `Delete a VNIC and its interface, wherever the interface has been moved.
With -t only the running VNIC is deleted: it comes back when overlayd
restarts. Without -t it is also removed from the saved configuration.`,
		Args: oneOperand("VNIC"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.call(admin.MethodDeleteVNIC, admin.NameParams{Name: args[0], Temporary: temporary}, nil)
		},
	}
	c.Flags().BoolVarP(&temporary, "temporary", "t", false, "delete only the running VNIC")
	return c
}

var vnicFields = []ofmt.Field{{Name: "LINK", Width: 16}, {Name: "OVER", Width: 20}, {Name: "MACADDRESS", Width: 19}, {Name: "VID", Width: 6}, {Name: "MTU", Width: 6}, {Name: "PROTECTION", Width: 12}}

func showVNICCmd(e *env) *cobra.Command {
	var parsable bool
	var output, over string
	c := &cobra.Command{
		Use:   "show-vnic [-p] [-o <field>,...] [-l <overlay>] [<vnic>]",
		Short: "show VNICs",
		Long: `Show the named VNIC, the VNICs of one overlay (-l), or all VNICs:
  LINK OVER MACADDRESS VID MTU PROTECTION
VID is 0 for an untagged VNIC. MTU is the interface's: "1400(want 1300)"
when it could not follow its overlay's MTU (set-linkprop said why).
PROTECTION is mac-nospoof or none. -o and -p work as for show-overlay.`,
		Args: optionalOperand("VNIC"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(e, vnicFields, output, parsable, admin.MethodShowVNIC,
				admin.ShowVNICParams{Overlay: over, Name: first(args)},
				func(v overlay.VNICInfo) []row {
					mtu := fmt.Sprint(v.MTU)
					if v.WantMTU != 0 && !parsable {
						// The interface could not follow its overlay's MTU.
						mtu = fmt.Sprintf("%d(want %d)", v.MTU, v.WantMTU)
					}
					return []row{{"LINK": v.Name, "OVER": v.Overlay, "MACADDRESS": v.MAC,
						"VID": fmt.Sprint(v.VLAN), "MTU": mtu, "PROTECTION": v.Protection}}
				})
		},
	}
	f := c.Flags()
	f.BoolVarP(&parsable, "parsable", "p", false, "machine-parsable output (needs -o FIELD,... or -o all)")
	f.StringVarP(&output, "output", "o", "", "fields to print, comma-separated, or all")
	f.StringVarP(&over, "link", "l", "", "only VNICs of this overlay")
	return c
}
