// Package daemon is overlayd: it wires the data path, the overlay core and
// the admin API together and runs until told to stop.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"os/user"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"overlaynet/admin"
	"overlaynet/datapath"
	"overlaynet/datapath/userspace"
	"overlaynet/overlay"
	"overlaynet/search/svp"
	"overlaynet/state"
	"overlaynet/underlayns"
)

// DefaultStateDir is where overlayd keeps its state.
const DefaultStateDir = "/var/lib/overlayd"

// Options configure overlayd.
type Options struct {
	Socket          string
	SocketGroup     string
	StateDir        string
	LogFormat       string
	LogLevel        string
	Rules           string
	Metrics         string
	KeepPrivs       bool
	Offloads        bool
	CPUProfile      string
	DefaultDataPath string
	WorkerSched     string
	Workers         int
	SVPLogDelay     time.Duration
	UnderlayNetNS   []string
}

// Main runs overlayd with args (without the program name) and returns the
// exit status: 0 after a clean stop (or --help, on stdout), 1 when it
// fails, 2 on a usage error (a bad flag or flag value).
func Main(args []string, stdout, stderr io.Writer) int {
	var o Options
	c := newCommand(&o, stderr)
	c.SetArgs(args)
	c.SetOut(stdout) // --help
	c.SetErr(stderr)
	c.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	if err := c.Execute(); err != nil {
		fmt.Fprintf(stderr, "overlayd: %v\n", err)
		var ue usageError
		if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") {
			fmt.Fprintf(stderr, "usage: %s (overlayd --help for more)\n", c.Use)
			return 2
		}
		return 1
	}
	return 0
}

// Command returns overlayd's command, for its manual page.
func Command() *cobra.Command {
	var o Options
	c := newCommand(&o, io.Discard)
	// The page must not depend on the machine it was made on.
	c.Flags().Lookup("workers").DefValue = "CPUs/2"
	return c
}

func newCommand(o *Options, stderr io.Writer) *cobra.Command {
	c := &cobra.Command{
		Use:   "overlayd [--socket PATH] [--state-dir DIR] [options]",
		Short: "the overlay network daemon",
		Long: `overlayd carries this host's overlay networks: it holds the overlays, their
VNICs and search plugins, moves frames between VNICs and the underlay
(VXLAN over UDP), and answers overlayadm on its admin socket.

It runs in the foreground and logs to stderr. It needs root (CAP_NET_ADMIN
to create TAP interfaces and set their addresses, and to bind the
underlay sockets). SIGINT or SIGTERM stop it. The interfaces of
persistent VNICs (created without -t) stay, so guests keep theirs, and
the next overlayd takes them over; temporary ones are not restored.
SIGHUP makes every search plugin reload its configuration (files: reread
the file), as 'overlayadm refresh-overlay' does.

Everything created without -t is saved in --state-dir and comes back when
overlayd starts again, after a crash or a reboot; VNIC interfaces outlive
the daemon, and a new overlayd takes them over wherever they were moved,
so guests keep their interfaces. A second overlayd on the same state
directory or socket refuses to start.

After restoring its configuration overlayd drops every capability but
CAP_NET_ADMIN (TAP devices, netlink, socket buffers),
CAP_NET_BIND_SERVICE (underlay ports below 1024) and CAP_NET_RAW
(NVGRE's raw IP socket), unless --keep-privileges is given.

--rules names a SmartOS overlay_rules.json: 'create-vnic -l rule/42'
then creates the overlay rule42 from the rule "rule" on first use.
--metrics serves per-overlay counters, status and lookup latency
histograms for Prometheus.

Every flag is checked before anything is created or restored: a bad one
exits with status 2 and changes nothing.

The admin socket is mode 0600 (root only), or 0660 owned by
--socket-group so that members of that group may use overlayadm.`,
		Args:          cobra.NoArgs,
		SilenceErrors: true,
		SilenceUsage:  true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(*o, stderr)
		},
	}
	f := c.Flags()
	f.StringVar(&o.Socket, "socket", admin.DefaultSocket, "admin socket path")
	f.StringVar(&o.SocketGroup, "socket-group", "", "group allowed to use the admin socket (mode 0660)")
	f.StringVar(&o.StateDir, "state-dir", DefaultStateDir, "directory for persistent state")
	f.StringVar(&o.LogFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&o.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.StringVar(&o.Rules, "rules", overlay.DefaultRulesPath, "SmartOS overlay_rules.json for create-vnic -l <rule>/<vnetid>")
	f.StringVar(&o.Metrics, "metrics", "", "serve Prometheus metrics at http://ADDR/metrics (off by default)")
	f.BoolVar(&o.KeepPrivs, "keep-privileges", false, "keep every capability instead of dropping those not needed after startup")
	f.StringVar(&o.DefaultDataPath, "default-datapath", userspace.Name, "data path of overlays created without -p datapath=: "+dataPathHelp())
	f.StringVar(&o.CPUProfile, "cpu-profile", "", "write a Go CPU profile of the whole run to this file (for performance work)")
	f.BoolVar(&o.Offloads, "offloads", true, "move TCP in 64 KB super-frames (TAP TSO, UDP GSO/GRO); --offloads=false for one frame per system call")
	f.IntVar(&o.Workers, "workers", max(1, runtime.NumCPU()/2), "worker threads of the userspace data path, each with a queue of every TAP and a socket of every listen address: more carry more flows at once (one flow never goes faster); the default is half the CPUs")
	f.DurationVar(&o.SVPLogDelay, "svp-log-delay", svp.DefaultLogDelay, "svp overlays: wait this long after starting before the first LOG_REQ to a mapping server (illumos: 5-10 s), so that a server without a log (Triton's json store dies of a LOG_REQ) answers lookups first; a server that closes the connection on LOG_REQ gets them ever more rarely, from this doubling up to 5m")
	f.StringArrayVar(&o.UnderlayNetNS, "underlay-netns", nil, "network namespace (ip netns name, or path) that overlays created later may have as underlay_netns: entered at startup, before CAP_SYS_ADMIN is dropped (repeatable; restored overlays' are entered anyway)")
	f.StringVar(&o.WorkerSched, "worker-sched", userspace.SchedBatch, "scheduling policy of the userspace data path's worker thread: batch (more throughput on busy CPUs) or normal (a woken worker preempts at once: lower latency under load)")
	return c
}

// usageError is a bad flag or flag value: exit status 2, as for the other
// commands.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// checkFlags validates every flag before anything is created or restored.
func checkFlags(o Options) error {
	if o.Workers < 1 || o.Workers > 64 {
		return fmt.Errorf("--workers %d: want 1 to 64", o.Workers)
	}
	if o.WorkerSched != userspace.SchedBatch && o.WorkerSched != userspace.SchedNormal {
		return fmt.Errorf("--worker-sched %q: want batch or normal", o.WorkerSched)
	}
	if _, ok := datapath.Lookup(o.DefaultDataPath); !ok {
		return fmt.Errorf("--default-datapath %q: want one of %s", o.DefaultDataPath, strings.Join(datapath.Names(), ", "))
	}
	if o.Metrics != "" {
		// The address itself (an IP or a host name) is judged by the
		// listen that follows, still before anything is created.
		_, port, err := net.SplitHostPort(o.Metrics)
		if err != nil {
			return fmt.Errorf("--metrics %q: want ADDR:PORT, e.g. 127.0.0.1:9790 or :9790", o.Metrics)
		}
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			return fmt.Errorf("--metrics %q: port %q is not a number from 1 to 65535", o.Metrics, port)
		}
	}
	if o.SocketGroup != "" {
		if _, err := user.LookupGroup(o.SocketGroup); err != nil {
			return fmt.Errorf("--socket-group %q: %v", o.SocketGroup, err)
		}
	}
	return nil
}

func newLogger(o Options, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.LogLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", o.LogLevel)
	}
	hopts := &slog.HandlerOptions{Level: level}
	switch o.LogFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, hopts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, hopts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", o.LogFormat)
}

func run(o Options, stderr io.Writer) error {
	log, err := newLogger(o, stderr)
	if err != nil {
		return usageError{err}
	}
	if err := checkFlags(o); err != nil {
		return usageError{err}
	}
	if err := svp.SetLogDelay(o.SVPLogDelay); err != nil {
		return usageError{fmt.Errorf("--svp-log-delay %v: %w", o.SVPLogDelay, err)}
	}
	// The metrics address is taken first: one in use fails here, before
	// the state directory is created or anything restored.
	var metricsLn net.Listener
	if o.Metrics != "" {
		if metricsLn, err = net.Listen("tcp", o.Metrics); err != nil {
			return fmt.Errorf("--metrics %s: %w", o.Metrics, err)
		}
		defer metricsLn.Close()
	}
	if o.CPUProfile != "" {
		f, err := os.Create(o.CPUProfile)
		if err != nil {
			return fmt.Errorf("--cpu-profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpu-profile: %w", err)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	dir, err := state.Open(o.StateDir)
	if err != nil {
		return err
	}
	defer dir.Close()
	cfg, notes, err := dir.Load()
	for _, n := range notes {
		log.Warn("state: " + n)
	}
	if err != nil {
		return err
	}
	owner, note, err := dir.ID()
	if note != "" {
		log.Warn("state: " + note)
	}
	if err != nil {
		return err
	}
	ln, err := admin.Listen(o.Socket, o.SocketGroup)
	if err != nil {
		return err
	}
	defer os.Remove(o.Socket)
	dps, err := datapath.Open(datapath.Env{Log: log, Owner: owner, Offloads: o.Offloads, Workers: o.Workers, Sched: o.WorkerSched})
	if err != nil {
		return err
	}
	mgr := overlay.NewManager(log, dps, o.DefaultDataPath)
	defer mgr.Close()
	// Threads in the underlay namespaces overlays may ask for later,
	// while entering one is still allowed.
	for _, ref := range o.UnderlayNetNS {
		if _, err := underlayns.Get(ref); err != nil {
			return fmt.Errorf("--underlay-netns %s: %w", ref, err)
		}
	}
	start := time.Now()
	for _, err := range mgr.Restore(dir, cfg) {
		log.Error("restore: "+err.Error(), "state_dir", o.StateDir)
	}
	log.Info("configuration restored", "overlays", len(cfg.Overlays), "vnics", len(cfg.VNICs),
		"took", time.Since(start).Round(time.Millisecond).String())
	mgr.SetRulesPath(o.Rules)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if o.Metrics != "" {
		if err := serveMetrics(ctx, metricsLn, mgr, log); err != nil {
			return fmt.Errorf("--metrics %s: %w", o.Metrics, err)
		}
	}
	if !o.KeepPrivs {
		if err := dropPrivileges(); err != nil {
			log.Warn("cannot drop privileges; running with all of root's", "why", explainDrop(err))
		} else {
			log.Info("privileges dropped", "kept", "CAP_NET_ADMIN,CAP_NET_BIND_SERVICE,CAP_NET_RAW")
		}
	}
	log.Info("overlayd started", "socket", o.Socket, "state_dir", o.StateDir, "default_datapath", o.DefaultDataPath, "pid", os.Getpid())
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			log.Info("SIGHUP: refreshing every overlay's search plugin")
			if err := mgr.Refresh(""); err != nil {
				log.Error("refresh failed", "err", err)
			}
		}
	}()
	srv := &admin.Server{Manager: mgr, Log: log}
	if err := srv.Serve(ctx, ln); err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	log.Info("overlayd stopping")
	return nil
}

// dataPathHelp lists the data paths linked in, for --default-datapath.
func dataPathHelp() string {
	var parts []string
	for _, name := range datapath.Names() {
		d, _ := datapath.Lookup(name)
		parts = append(parts, name+" ("+d.Help+")")
	}
	return strings.Join(parts, ", or ")
}
