// Package cli is the portolan command line: the SVP server (serve) and the
// administration subcommands that edit its store.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"overlaynet/ether"
	"overlaynet/ofmt"
	"overlaynet/portolan/api"
	"overlaynet/portolan/index"
	"overlaynet/portolan/store"
)

// StoreEnv names the environment variable holding the default --store.
const StoreEnv = "PORTOLAN_STORE"

type usageError struct{ error }

// Main runs portolan with args (without the program name) and returns the
// exit status: 0 on success, 1 when a request fails, 2 on a usage error.
func Main(args []string, stdout, stderr io.Writer) int {
	return MainContext(context.Background(), args, stdout, stderr)
}

// MainContext is Main, with serve stopping when ctx ends as well as on
// SIGINT or SIGTERM: tests run a server in-process with it.
func MainContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "portolan: %s\n", strings.ReplaceAll(err.Error(), "\n", "; "))
	var ue usageError
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") || strings.HasPrefix(err.Error(), "required flag") {
		if cmd != nil && cmd != root {
			fmt.Fprintf(stderr, "usage: portolan %s\n", cmd.Use)
		}
		return 2
	}
	return 1
}

// Command returns portolan's command tree, for its manual pages.
func Command() *cobra.Command { return newRoot(io.Discard, io.Discard) }

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	var dsn, server, tokenFile string
	root := &cobra.Command{
		Use:   "portolan <subcommand> [--store DSN] [options]",
		Short: "the SVP mapping server for overlay networks",
		Long: `portolan tells overlay hosts where things are: which host holds a VNIC's MAC
(VL2), which MAC holds an overlay IP address (VL3), and which cached answers
each host must forget after a change (the log). Hosts ask over SVP, the
protocol of Triton's portolan, which this server speaks byte for byte.

The store is an embedded SQLite file by default (nothing to install or
run), or a PostgreSQL database so that several portolan servers serve one
shared store: --store sqlite:PATH or --store postgres://..., else
$` + StoreEnv + `, else ` + store.DefaultDSN + `.

With --server URL (and --token-file FILE), add-host, remove-host,
add-vnic, move-vnic, remove-vnic, show-hosts and show-vnics work through a
portolan server's network API (portolan serve --api) instead of opening
the store: for hosts that cannot reach the store itself.

Exit status: 0 on success, 1 when a request fails, 2 on a usage error.`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.PersistentFlags().StringVar(&dsn, "store", "", "store: sqlite:PATH or postgres://... (default $"+StoreEnv+", then "+store.DefaultDSN+")")
	root.PersistentFlags().StringVar(&server, "server", "", "administration subcommands: work through this server's API (http[s]://HOST:PORT, portolan serve --api) instead of the store")
	root.PersistentFlags().StringVar(&tokenFile, "token-file", "", "with --server: file holding the API token")
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	which := func() string {
		if dsn == "" {
			dsn = os.Getenv(StoreEnv)
		}
		if dsn == "" {
			dsn = store.DefaultDSN
		}
		return dsn
	}
	// open opens a store that exists: reading, removing and serving on a
	// mistyped path must fail, not start a new empty store.
	open := func(ctx context.Context) (*store.SQL, error) {
		s, err := store.OpenExisting(ctx, which())
		if errors.Is(err, store.ErrNoStore) {
			// The hint names the store as given, unless that would
			// show a password (masked, it would not work either).
			again := "--store " + dsn
			if store.Redact(dsn) != dsn {
				again = "the same --store"
			}
			if errors.Is(err, store.ErrNoTables) {
				return nil, fmt.Errorf("%w (if it is the right store, portolan init %s adds them)", err, again)
			}
			return nil, fmt.Errorf("%w (portolan init %s creates it)", err, again)
		}
		return s, err
	}
	// create opens the store, creating it when missing, and says so:
	// for init and the commands that add.
	create := func(ctx context.Context) (*store.SQL, error) {
		s, err := store.Open(ctx, which())
		if err == nil && s.Created() {
			fmt.Fprintf(stderr, "portolan: created a new store: %s\n", store.Redact(dsn))
		}
		return s, err
	}
	// viaServer makes an administration subcommand work through the
	// server's API when --server is given, else on the store.
	viaServer := func(o opener) mapOpener {
		return func(ctx context.Context) (mappings, func(), error) {
			if server != "" {
				if dsn != "" {
					return nil, nil, usageError{errors.New("--server and --store: give one (the server has its own store)")}
				}
				r, err := newRemote(server, tokenFile)
				return r, func() {}, err
			}
			if tokenFile != "" {
				return nil, nil, usageError{errors.New("--token-file goes with --server")}
			}
			s, err := o(ctx)
			if err != nil {
				return nil, nil, err
			}
			return s, func() { s.Close() }, nil
		}
	}
	root.AddCommand(serveCmd(open, stderr), initCmd(create, stdout), addHostCmd(viaServer(create)), removeHostCmd(viaServer(open)),
		showHostsCmd(viaServer(open), stdout, stderr), addVNICCmd(viaServer(open)), removeVNICCmd(viaServer(open)),
		moveVNICCmd(viaServer(open)), showVNICsCmd(viaServer(open), stdout, stderr), checkCmd(open, stdout))
	return root
}

type opener func(context.Context) (*store.SQL, error)

// withStore runs fn with the store open.
func withStore(open opener, fn func(ctx context.Context, s *store.SQL) error) error {
	ctx := context.Background()
	s, err := open(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	return fn(ctx, s)
}

func initCmd(create opener, stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "init [--store DSN]",
		Short: "create the store, or bring an existing one's tables up to date",
		Long: `Create the store: the SQLite file (and its directory) or portolan's tables in
an existing PostgreSQL database. On a store that exists it only adds the
tables of a newer release, which every command does anyway.

serve and every other command but add-host refuse a store that does not
exist, so that a mistyped --store is an error instead of a new empty
store; init and add-host create it (and say so on stderr).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStore(create, func(ctx context.Context, s *store.SQL) error {
				if !s.Created() {
					fmt.Fprintf(stdout, "the store exists: %s\n", s)
				}
				return nil
			})
		},
	}
}

func addHostCmd(open mapOpener) *cobra.Command {
	var port uint16
	var sources []string
	c := &cobra.Command{
		Use:   "add-host [--port PORT] [--source ADDR]... <host> <underlay-ip>",
		Short: "add a host, or change its underlay address, port and source addresses",
		Long: `Add a host (a machine running overlayd) with the underlay address and UDP
port it receives VXLAN on. The address is also how the host identifies
itself when it asks for its log (its svp/underlay_ip). Adding an existing
host sets its address, port and source addresses to those given (an
omitted --port is 4789, no --source is none), and a changed address tells
every host to forget answers that pointed at the old one.

The server gives a host's log only to connections from its underlay
address or from a --source address (repeatable): the addresses its SVP
connections come from when they do not come from the underlay address,
as when hosts reach portolan over a separate admin network. An address
may be a source of several hosts.`,
		Args: exactArgs(2, "<host> <underlay-ip>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if port == 0 {
				return usageError{errors.New("--port 0: a host receives VXLAN on a UDP port from 1 to 65535 (omit --port for 4789)")}
			}
			h, srcs, err := api.ParseHost(args[0], args[1], port, sources)
			if err != nil {
				return flagError(err)
			}
			return withMappings(open, func(ctx context.Context, s mappings) error {
				return s.SetHost(ctx, h, srcs)
			})
		},
	}
	c.Flags().Uint16Var(&port, "port", 4789, "UDP port the host receives VXLAN on")
	c.Flags().StringArrayVar(&sources, "source", nil, "another address the host's SVP connections come from (repeatable)")
	return c
}

func removeHostCmd(open mapOpener) *cobra.Command {
	return &cobra.Command{
		Use:   "remove-host <host>",
		Short: "remove a host that holds no VNIC",
		Args:  exactArgs(1, "<host>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withMappings(open, func(ctx context.Context, s mappings) error { return s.RemoveHost(ctx, args[0]) })
		},
	}
}

// vnicFlags are the flags naming a VNIC.
type vnicFlags struct {
	vnetid uint32
	mac    string
}

func (f *vnicFlags) add(c *cobra.Command) {
	c.Flags().Uint32Var(&f.vnetid, "vnetid", 0, "virtual network id (required)")
	c.Flags().StringVar(&f.mac, "mac", "", "the VNIC's MAC address (required)")
	c.MarkFlagRequired("vnetid")
	c.MarkFlagRequired("mac")
}

func (f *vnicFlags) parse() (ether.MAC, error) {
	mac, err := api.ParseVNICKey(f.vnetid, f.mac)
	return mac, flagError(err)
}

// flagError words an input error of the API's checks (which the
// subcommands share) as the command line's: a field is the flag of that
// name.
func flagError(err error) error {
	var ie *api.InvalidError
	if errors.As(err, &ie) && ie.Field != "" {
		return errors.New("--" + ie.Error())
	}
	return err
}

func addVNICCmd(open mapOpener) *cobra.Command {
	var vf vnicFlags
	var host string
	var ips []string
	var vlan uint16
	c := &cobra.Command{
		Use:   "add-vnic --vnetid N --mac MAC --host HOST [--ip IP]... [--vlan VID]",
		Short: "add a VNIC mapping",
		Long: `Add a VNIC: its MAC on virtual network --vnetid lives on --host, with the
overlay addresses --ip (repeatable; IPv4 and IPv6) on VLAN --vlan. Every
host with a VNIC on that network is told to forget what it cached about the
MAC and the addresses.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := api.ParseVNIC(vf.vnetid, vf.mac, host, ips, vlan)
			if err != nil {
				return flagError(err)
			}
			return withMappings(open, func(ctx context.Context, s mappings) error { return s.AddVNIC(ctx, v) })
		},
	}
	vf.add(c)
	c.Flags().StringVar(&host, "host", "", "the host holding the VNIC (required)")
	c.Flags().StringArrayVar(&ips, "ip", nil, "an overlay address of the VNIC (repeatable)")
	c.Flags().Uint16Var(&vlan, "vlan", 0, "the VNIC's VLAN inside the overlay")
	c.MarkFlagRequired("host")
	return c
}

func removeVNICCmd(open mapOpener) *cobra.Command {
	var vf vnicFlags
	c := &cobra.Command{
		Use:   "remove-vnic --vnetid N --mac MAC",
		Short: "remove a VNIC mapping",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			mac, err := vf.parse()
			if err != nil {
				return err
			}
			return withMappings(open, func(ctx context.Context, s mappings) error { return s.RemoveVNIC(ctx, vf.vnetid, mac) })
		},
	}
	vf.add(c)
	return c
}

func moveVNICCmd(open mapOpener) *cobra.Command {
	var vf vnicFlags
	var host string
	c := &cobra.Command{
		Use:   "move-vnic --vnetid N --mac MAC --host HOST",
		Short: "move a VNIC mapping to another host (migration)",
		Long: `Move a VNIC to another host, as when its VM migrates. Every host with a VNIC
on the network is told to forget where the MAC was, so their next frame
for it is looked up again and goes to the new host.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			mac, err := vf.parse()
			if err != nil {
				return err
			}
			return withMappings(open, func(ctx context.Context, s mappings) error { return s.MoveVNIC(ctx, vf.vnetid, mac, host) })
		},
	}
	vf.add(c)
	c.Flags().StringVar(&host, "host", "", "the host the VNIC moves to (required)")
	c.MarkFlagRequired("host")
	return c
}

func showHostsCmd(open mapOpener, stdout, stderr io.Writer) *cobra.Command {
	var parsable bool
	var output string
	c := &cobra.Command{
		Use:   "show-hosts [-p] [-o FIELD,...]",
		Short: "list hosts: HOST IP PORT SOURCES",
		Long: `List hosts: HOST, its underlay IP and PORT, and SOURCES, the other
addresses its SVP connections may come from (add-host --source),
comma-separated.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := ofmt.New(stdout, stderr, []ofmt.Field{{Name: "HOST", Width: 24}, {Name: "IP", Width: 40}, {Name: "PORT", Width: 6},
				{Name: "SOURCES", Width: 30}}, output, parsable)
			if err != nil {
				return usageError{err}
			}
			return withMappings(open, func(ctx context.Context, s mappings) error {
				srcs, err := s.Sources(ctx)
				if err != nil {
					return err
				}
				hs, err := s.Hosts(ctx)
				for _, h := range hs {
					var as []string
					for _, a := range srcs[h.ID] {
						as = append(as, a.String())
					}
					row := map[string]string{"HOST": h.ID, "IP": h.IP.String(), "PORT": strconv.Itoa(int(h.Port)), "SOURCES": strings.Join(as, ",")}
					p.Row(func(f string) string { return row[f] })
				}
				if err == nil {
					p.Flush()
				}
				return err
			})
		},
	}
	c.Flags().BoolVarP(&parsable, "parsable", "p", false, "machine-parsable output (needs -o FIELD,... or -o all)")
	c.Flags().StringVarP(&output, "output", "o", "", "fields to print, comma-separated, or all")
	return c
}

func showVNICsCmd(open mapOpener, stdout, stderr io.Writer) *cobra.Command {
	var parsable bool
	var output string
	var vnetid int64
	c := &cobra.Command{
		Use:   "show-vnics [--vnetid N] [-p] [-o FIELD,...]",
		Short: "list VNIC mappings: VNETID MAC VLAN HOST IPS",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := ofmt.New(stdout, stderr, []ofmt.Field{{Name: "VNETID", Width: 10}, {Name: "MAC", Width: 19},
				{Name: "VLAN", Width: 6}, {Name: "HOST", Width: 20}, {Name: "IPS", Width: 30}}, output, parsable)
			if err != nil {
				return usageError{err}
			}
			return withMappings(open, func(ctx context.Context, s mappings) error {
				vs, err := s.VNICs(ctx, uint32(vnetid), vnetid < 0)
				for _, v := range vs {
					var ips []string
					for _, a := range v.IPs {
						ips = append(ips, a.String())
					}
					row := map[string]string{"VNETID": strconv.Itoa(int(v.VNetID)), "MAC": ether.Short(v.MAC),
						"VLAN": strconv.Itoa(int(v.VLAN)), "HOST": v.Host, "IPS": strings.Join(ips, ",")}
					p.Row(func(f string) string { return row[f] })
				}
				if err == nil {
					p.Flush()
				}
				return err
			})
		},
	}
	c.Flags().Int64Var(&vnetid, "vnetid", -1, "only this virtual network")
	c.Flags().BoolVarP(&parsable, "parsable", "p", false, "machine-parsable output (needs -o FIELD,... or -o all)")
	c.Flags().StringVarP(&output, "output", "o", "", "fields to print, comma-separated, or all")
	return c
}

func checkCmd(open opener, stdout io.Writer) *cobra.Command {
	var dump string
	c := &cobra.Command{
		Use:   "check [--dump FILE|-|URL] [--store DSN]",
		Short: "compare the in-memory index with the store",
		Long: `Load an in-memory index of the store the way the server does (the latest
change's sequence number, then everything, then the changes since) and
compare it with a fresh read of the store. Every difference is printed, one
a line: a host, VL2 mapping (vnetid and MAC to host) or VL3 mapping (vnetid
and address to MAC) missing from the index, one the store does not have, or
one they hold differently. The exit status is 1 if there is any; otherwise
one line gives the counts.

With --dump FILE ("-" for standard input), the index compared is the one
dumped in FILE instead; with --dump http://ADDR:PORT/index, the one a
running server holds (see serve --admin). Differences about what changed
in the store after the dump's sequence number are left out.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var ix *index.Index
			if dump != "" {
				r, closeDump, err := openDump(cmd.Context(), dump)
				if err != nil {
					return fmt.Errorf("--dump %s: %w", dump, err)
				}
				defer closeDump()
				if ix, err = index.ReadDump(r); err != nil {
					return fmt.Errorf("--dump %s: %w", dump, err)
				}
			}
			return withStore(open, func(ctx context.Context, s *store.SQL) error {
				if ix == nil {
					var err error
					if ix, err = index.Load(ctx, s, nil); err != nil {
						return err
					}
				}
				diffs, err := index.Check(ctx, ix, s)
				if err != nil {
					return err
				}
				for _, d := range diffs {
					fmt.Fprintln(stdout, d)
				}
				if n := len(diffs); n > 0 {
					return fmt.Errorf("%d difference%s between the index (seq %d) and the store", n, plural(n), ix.Seq())
				}
				st := ix.Status()
				fmt.Fprintf(stdout, "index matches the store at seq %d: %d host%s, %d VL2 mapping%s, %d VL3 mapping%s\n",
					st.Seq, st.Hosts, plural(st.Hosts), st.VL2, plural(st.VL2), st.VL3, plural(st.VL3))
				return nil
			})
		},
	}
	c.Flags().StringVar(&dump, "dump", "", "compare the index dumped in this file (- for standard input) or served at this http:// URL")
	return c
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// noArgs rejects operands. (cobra.NoArgs calls an operand an "unknown
// command", which misleads on a command that has no subcommands.)
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("unexpected operand %q (%s takes none)", args[0], cmd.Name())}
	}
	return nil
}

func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError{fmt.Errorf("want %s, got %d operands", what, len(args))}
		}
		return nil
	}
}

// openDump opens an index dump: a file, standard input ("-"), or the
// /index of a server's --admin address (an http:// or https:// URL).
func openDump(ctx context.Context, name string) (io.Reader, func(), error) {
	switch {
	case name == "-":
		return os.Stdin, func() {}, nil
	case strings.HasPrefix(name, "http://"), strings.HasPrefix(name, "https://"):
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, name, nil)
		if err != nil {
			cancel()
			return nil, nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			cancel()
			return nil, nil, err
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			cancel()
			return nil, nil, fmt.Errorf("%s (is it a server's --admin address with /index?)", resp.Status)
		}
		return resp.Body, func() { resp.Body.Close(); cancel() }, nil
	default:
		f, err := os.Open(name)
		if err != nil {
			return nil, nil, err
		}
		return f, func() { f.Close() }, nil
	}
}
