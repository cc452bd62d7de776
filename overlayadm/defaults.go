package overlayadm

import (
	"github.com/spf13/cobra"

	"overlaynet/admin"
	"overlaynet/ofmt"
	"overlaynet/overlay"
)

var defaultFields = []ofmt.Field{{Name: "PROPERTY", Width: 20}, {Name: "PLUGIN", Width: 14}, {Name: "REQ", Width: 4},
	{Name: "DEFAULT", Width: 10}, {Name: "SITE", Width: 16}, {Name: "POSSIBLE", Width: 10}}

// The site defaults: illumos gave modify-overlay -d to deleting a target
// entry, so the straw man's show-overlay -d and modify-overlay -d are
// spelt as commands of their own, after ipadm's set-prop and reset-prop.

func showDefaultsCmd(e *env) *cobra.Command {
	var parsable bool
	var output string
	c := &cobra.Command{
		Use:   "show-defaults [-p] [-o <field>,...]",
		Short: "show every plugin property's default, and the site's",
		Long: `Show every property an overlay takes at creation from its plugins (and
mtu): whose it is, whether it is required, its built-in default, and the
site default set with set-default, which new overlays take in its place.
A required property with a site default need not be given at creation.

  PROPERTY PLUGIN REQ DEFAULT SITE POSSIBLE`,
		Example: `  overlayadm show-defaults
  overlayadm show-defaults -p -o property,site`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := printer(e, defaultFields, output, parsable)
			if err != nil {
				return err
			}
			var ds []overlay.DefaultInfo
			if err := e.call(admin.MethodShowDefaults, nil, &ds); err != nil {
				return err
			}
			for _, d := range ds {
				req := "-"
				if d.Required {
					req = "y"
				}
				r := row{"PROPERTY": d.Name, "PLUGIN": d.Plugin, "REQ": req, "DEFAULT": d.Default, "SITE": d.Site, "POSSIBLE": d.Possible}
				p.Row(func(f string) string { return r[f] })
			}
			p.Flush()
			return nil
		},
	}
	c.Flags().BoolVarP(&parsable, "parsable", "p", false, "machine-parsable output (needs -o FIELD,... or -o all)")
	c.Flags().StringVarP(&output, "output", "o", "", "fields to print, comma-separated, or all")
	return c
}

func setDefaultCmd(e *env) *cobra.Command {
	var props []string
	c := &cobra.Command{
		Use:   "set-default -p <prop>=<value>[,...]",
		Short: "set site defaults of overlay properties",
		Long: `Set the site's default of overlay properties (show-defaults lists them):
overlays created from then on (create-overlay, and SmartOS rules) take
it for each property they are not given, and show-overlay marks such a
value SOURCE site. Overlays already running keep their values. Each value
is checked as the property checks it; all given defaults are set, or
none. Site defaults are saved in overlayd's state directory.

vnetid has none (each overlay gives its own), nor datapath (its default is
overlayd --default-datapath).`,
		Example: `  overlayadm set-default -p mtu=1300
  overlayadm set-default -p svp/host=portolan.example,svp/underlay_ip=192.0.2.1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			as, err := someAssignments(props)
			if err != nil {
				return err
			}
			return e.call(admin.MethodSetDefaults, overlay.SetDefaultsRequest{Props: as}, nil)
		},
	}
	c.Flags().StringArrayVarP(&props, "prop", "p", nil, "property assignments <prop>=<value>[,...]")
	return c
}

func resetDefaultCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "reset-default <prop>...",
		Short: "remove site defaults",
		Long: `Remove the site's default of each property named: new overlays take the
built-in default again (show-defaults). Overlays that took the site
default keep their value. A property without a site default is left as
it is.`,
		Example: `  overlayadm reset-default mtu svp/host`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("no property named (reset-default <prop>...)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.call(admin.MethodResetDefaults, overlay.ResetDefaultsRequest{Names: args}, nil)
		},
	}
}
