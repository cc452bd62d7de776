package overlayadm

import (
	"slices"
	"time"

	"github.com/spf13/cobra"

	"overlaynet/admin"
	"overlaynet/encap"
	"overlaynet/overlay"
	"overlaynet/search"
)

// addCompletion gives the subcommands shell completion of their operands
// and flags: overlay, VNIC and property names from the running daemon
// (asked with a short timeout, so that a stopped one does not hang the
// shell), plugin names from the registry. 'overlayadm completion bash'
// (or zsh) prints the script.
func (e *env) addCompletion(root *cobra.Command) {
	root.CompletionOptions.HiddenDefaultCmd = false
	for _, c := range root.Commands() {
		switch c.Name() {
		case "delete-overlay", "show-overlay", "modify-overlay", "refresh-overlay":
			c.ValidArgsFunction = e.first(e.overlayNames)
		case "set-linkprop":
			c.ValidArgsFunction = e.first(func() []string { return append(e.overlayNames(), e.vnicNames()...) })
			c.RegisterFlagCompletionFunc("prop", e.propNames)
		case "delete-vnic":
			c.ValidArgsFunction = e.first(e.vnicNames)
		case "show-vnic":
			c.ValidArgsFunction = e.first(e.vnicNames)
			c.RegisterFlagCompletionFunc("link", e.names(e.overlayNames))
		case "create-vnic":
			c.RegisterFlagCompletionFunc("link", e.names(e.overlayNames))
			c.RegisterFlagCompletionFunc("prop", fixed("mtu=", "protection=mac-nospoof", "protection=none"))
			c.ValidArgsFunction = noFiles
		case "create-overlay":
			c.RegisterFlagCompletionFunc("encap", fixed(encap.Names()...))
			c.RegisterFlagCompletionFunc("search", fixed(search.Names()...))
			c.ValidArgsFunction = noFiles
		default:
			c.ValidArgsFunction = noFiles
		}
	}
}

type completeFunc = func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective)

func noFiles(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return nil, cobra.ShellCompDirectiveNoFileComp
}

func fixed(vals ...string) completeFunc {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return vals, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
	}
}

// names completes a flag's value from list.
func (e *env) names(list func() []string) completeFunc {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return list(), cobra.ShellCompDirectiveNoFileComp
	}
}

// first completes the one operand from list, and nothing after it.
func (e *env) first(list func() []string) completeFunc {
	return func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return list(), cobra.ShellCompDirectiveNoFileComp
	}
}

// quick is the client completion uses: a stopped daemon must not hang
// the shell.
func (e *env) quick() *admin.Client {
	e.resolveSocket()
	return &admin.Client{Socket: e.socket, Timeout: time.Second}
}

func (e *env) overlays() []overlay.OverlayInfo {
	var ovs []overlay.OverlayInfo
	e.quick().Call(admin.MethodShowOverlay, admin.NameParams{}, &ovs)
	return ovs
}

func (e *env) overlayNames() []string {
	var names []string
	for _, ov := range e.overlays() {
		names = append(names, ov.Name)
	}
	return names
}

func (e *env) vnicNames() []string {
	var vs []overlay.VNICInfo
	e.quick().Call(admin.MethodShowVNIC, admin.ShowVNICParams{}, &vs)
	var names []string
	for _, v := range vs {
		names = append(names, v.Name)
	}
	return names
}

// propNames completes set-linkprop -p: the read-write properties of the
// overlay named (of every overlay before one is), or a VNIC's.
func (e *env) propNames(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	seen := map[string]bool{}
	var out []string
	for _, ov := range e.overlays() {
		if len(args) > 0 && ov.Name != args[0] {
			continue
		}
		for _, p := range ov.Props {
			if p.Perm == "rw" && !seen[p.Name] {
				seen[p.Name] = true
				out = append(out, p.Name+"=")
			}
		}
	}
	if len(args) > 0 && len(out) == 0 && slices.Contains(e.vnicNames(), args[0]) {
		out = []string{"protection=mac-nospoof", "protection=none"}
	}
	return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
}
