// Package overlayadm is the overlayadm command line: dladm's overlay and VNIC
// subcommands, talking to overlayd over its admin socket.
package overlayadm

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"overlaynet/admin"
	"overlaynet/overlay"
	"overlaynet/prop"
)

// Exit statuses.
const (
	ExitOK    = 0
	ExitError = 1 // the request failed
	ExitUsage = 2 // the command line was wrong
)

// usageError is a mistake on the command line: it is followed by the
// subcommand's usage line.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// env is what every subcommand needs.
type env struct {
	stdout, stderr io.Writer
	socket         string
	timeout        time.Duration
}

func (e *env) client() *admin.Client { return &admin.Client{Socket: e.socket, Timeout: e.timeout} }

func (e *env) call(method string, params, result any) error {
	return e.client().Call(method, params, result)
}

// Command returns overlayadm's command tree, for its manual pages and
// completion scripts (Main runs the same tree).
func Command() *cobra.Command { return newRoot(&env{stdout: io.Discard, stderr: io.Discard}) }

// Main runs overlayadm with args (without the program name) and returns
// the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr}
	root := newRoot(e)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteC()
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(stderr, "overlayadm: %v\n", oneLine(err))
	var ue *usageError
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") {
		if cmd != nil && cmd != root {
			fmt.Fprintf(stderr, "usage: overlayadm %s\n", cmd.Use)
		} else {
			fmt.Fprintf(stderr, "run 'overlayadm --help' for the subcommands\n")
		}
		return ExitUsage
	}
	return ExitError
}

func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "overlayadm [--socket PATH] <subcommand> [options] [operands]",
		Short: "administer overlay networks and their VNICs",
		Long: `overlayadm administers the overlay networks of one host, as dladm does on
illumos. An overlay is a virtual switch spanning hosts, identified by a
virtual network id (vnetid) and carried over the underlay IP network by an
encapsulation (vxlan, geneve or nvgre). Its search plugin says where frames for MACs that
are not on this host go: direct sends everything to one peer. VNICs are
network interfaces on an overlay.

overlayadm talks to overlayd over its admin socket: the --socket flag, else
$OVERLAYD_SOCKET, else ` + admin.DefaultSocket + `. A daemon that does not
answer within --timeout (default ` + admin.DefaultTimeout.String() + `) is reported, with its pid.

'overlayadm completion bash' (or zsh) prints a completion script: it
completes overlay, VNIC and property names from the running daemon.

Exit status: 0 on success, 1 when a request fails, 2 on a usage error.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		Example: `  overlayadm create-overlay -e vxlan -s direct -v 42 \
      -p vxlan/listen_ip=192.0.2.1 -p direct/dest_ip=192.0.2.2,direct/dest_port=4789 overlay0
  overlayadm create-vnic -l overlay0 vnic0
  overlayadm show-overlay overlay0
  overlayadm show-vnic -p -o link,macaddress`,
	}
	root.PersistentFlags().StringVar(&e.socket, "socket", "", "overlayd admin socket (default $"+admin.SocketEnv+", then "+admin.DefaultSocket+")")
	root.PersistentFlags().DurationVar(&e.timeout, "timeout", admin.DefaultTimeout, "how long to wait for overlayd's answer")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usagef("%v", err) })
	root.AddCommand(
		createOverlayCmd(e), deleteOverlayCmd(e), showOverlayCmd(e), setLinkpropCmd(e),
		modifyOverlayCmd(e), refreshOverlayCmd(e),
		createVNICCmd(e), deleteVNICCmd(e), showVNICCmd(e), showListenerCmd(e),
		showDefaultsCmd(e), setDefaultCmd(e), resetDefaultCmd(e),
	)
	root.PersistentPreRun = func(*cobra.Command, []string) { e.resolveSocket() }
	e.addCompletion(root)
	return root
}

// resolveSocket fills in the default socket when --socket was not given.
func (e *env) resolveSocket() {
	if e.socket == "" {
		e.socket = os.Getenv(admin.SocketEnv)
	}
	if e.socket == "" {
		e.socket = admin.DefaultSocket
	}
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// assignments converts -p arguments.
func assignments(args []string) ([]overlay.Assignment, error) {
	pairs, err := prop.ParseAssignments(args)
	if err != nil {
		return nil, usagef("%v", err)
	}
	out := make([]overlay.Assignment, len(pairs))
	for i, p := range pairs {
		out[i] = overlay.Assignment{Name: p[0], Value: p[1]}
	}
	return out, nil
}

// someAssignments is assignments, of which there must be one at least.
func someAssignments(args []string) ([]overlay.Assignment, error) {
	as, err := assignments(args)
	if err == nil && len(as) == 0 {
		err = usagef("no property given (-p <prop>=<value>)")
	}
	return as, err
}

// oneOperand checks a subcommand got exactly one operand.
func oneOperand(what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) == 0:
			return usagef("missing %s name", what)
		case len(args) > 1:
			return usagef("only one %s may be given, got %d: %s", what, len(args), strings.Join(args, " "))
		}
		return nil
	}
}

// optionalOperand allows zero or one operand.
func optionalOperand(what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > 1 {
			return usagef("only one %s may be given, got %d: %s", what, len(args), strings.Join(args, " "))
		}
		return nil
	}
}

func first(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}
