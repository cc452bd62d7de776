package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"overlaynet/portolan"
	"overlaynet/portolan/api"
	"overlaynet/portolan/index"
	"overlaynet/svpwire"
)

// maxLogHold is the longest --log-hold: our svp plugin assumes a server
// holds a LOG_REQ no longer than this (it gives up on the call 2 s
// later), and it is well inside the illumos client's 30 s no-progress
// limit.
const maxLogHold = portolan.DefaultLogHold

// wantConns is the number of connections a server should be able to
// hold: one per overlay host, for a cloud of 10,000 hosts.
const wantConns = 10000

func serveCmd(open opener, stderr io.Writer) *cobra.Command {
	var listen, admin, logFormat, logLevel string
	var apiAddr, apiTokenFile, apiCert, apiKey string
	var noOwnership, apiOpenReads bool
	var logHold time.Duration
	c := &cobra.Command{
		Use:   "serve [--listen ADDR:PORT] [--admin ADDR:PORT] [--api ADDR:PORT --api-token-file FILE] [--log-hold DURATION] [--store DSN]",
		Short: "run the SVP server",
		Long: `Run the SVP server in the foreground, logging to stderr. It answers many
concurrent connections, each with many requests in flight, in any order. A
malformed frame (bad CRC, unknown version, oversized) closes only the
connection it came on. SIGINT or SIGTERM stop it.

Lookups (VL2 and VL3) are answered from an in-memory index of the store,
loaded at start (the log says how many mappings and how long it took) and
kept current from the store's change feed, whoever changed it: the
administration subcommands writing the SQLite file, or another server on
the same PostgreSQL store (LISTEN/NOTIFY, with the change sequence read
again at least every second, so a lost notification is caught up). A
change is answered within milliseconds. While the store is unreachable the
index answers from the last state read, and the log says so.

A LOG_REQ that finds the host's log empty is held until an entry arrives or
--log-hold passes, then answered: so a host that keeps one LOG_REQ
outstanding (overlayd's svp plugin does) learns of a change in
milliseconds, and an idle host costs one request every --log-hold. 0
answers at once, as Triton's portolan does.

A LOG_RM is answered as soon as the server has its ids; they are removed
from the store in the background (one transaction every 20 ms for all
hosts), and never given again meanwhile. Should the server die first, its
hosts get those entries again, which does no harm; on SIGINT or SIGTERM it
writes them before exiting.

SVP has no authentication. So that no client can claim another host's
underlay IP, a host's log is given (LOG_REQ) and its entries removed
(LOG_RM) only over a connection from that host's underlay IP or from one
of its --source addresses (add-host); other requests are refused with
status FATAL, logged with the claimed IP and the source address, and
counted. --no-ownership-check turns this off.

--api serves the network admin API on that address: the add-host,
remove-host, add-vnic, move-vnic, remove-vnic, show-hosts and show-vnics
commands as HTTP/JSON requests (portolan --server URL uses it), making the
same changes and log entries as the commands do. Every request must carry
the token in --api-token-file (Authorization: Bearer TOKEN); reads without
it are refused too unless --api-open-reads. --api-tls-cert and
--api-tls-key serve it over HTTPS.

--admin serves, over HTTP on that address, /metrics (Prometheus), /index
(the index in the dump format, for 'portolan check --dump URL') and
/debug/pprof/ (Go's profiles: go tool pprof http://ADDR/debug/pprof/profile;
an execution trace, for where goroutines wait: curl -o t.out
http://ADDR/debug/pprof/trace?seconds=2, then go tool trace t.out).
Bind it to a loopback or management address: it is not authenticated.

Each host holds one connection: a server for N hosts needs N file
descriptors and more (the unit file in dist/systemd sets LimitNOFILE=65536);
it warns at start when its limit is below ` + strconv.Itoa(wantConns) + ` connections.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return usageError{fmt.Errorf("--log-level %q: want debug, info, warn or error", logLevel)}
			}
			var h slog.Handler
			switch logFormat {
			case "text":
				h = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})
			case "json":
				h = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level})
			default:
				return usageError{fmt.Errorf("--log-format %q: want text or json", logFormat)}
			}
			if logHold < 0 || logHold > maxLogHold {
				return usageError{fmt.Errorf("--log-hold %v: want 0 (answer at once) to %v (the longest hold clients allow for)", logHold, maxLogHold)}
			}
			if err := checkAPIFlags(apiAddr, apiTokenFile, apiCert, apiKey, apiOpenReads); err != nil {
				return usageError{err}
			}
			var token string
			if apiAddr != "" {
				var err error
				if token, err = readToken(apiTokenFile); err != nil {
					return err
				}
			}
			log := slog.New(h)
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			st, err := open(ctx)
			if err != nil {
				return err
			}
			defer st.Close()
			log.Info("store opened", "store", st.String())
			// Listen before loading, so that an address in use fails at
			// once rather than after a long load.
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("--listen %s: %w", listen, err)
			}
			defer ln.Close()
			var aln net.Listener
			if admin != "" {
				if aln, err = net.Listen("tcp", admin); err != nil {
					return fmt.Errorf("--admin %s: %w", admin, err)
				}
				defer aln.Close()
			}
			var apiLn net.Listener
			if apiAddr != "" {
				if apiLn, err = net.Listen("tcp", apiAddr); err != nil {
					return fmt.Errorf("--api %s: %w", apiAddr, err)
				}
				defer apiLn.Close()
			}
			checkLimits(log)

			t0 := time.Now()
			ix, err := index.Load(ctx, st, log)
			if err != nil {
				return fmt.Errorf("loading the index: %w", err)
			}
			is := ix.Status()
			log.Info("index loaded", "hosts", is.Hosts, "vl2", is.VL2, "vl3", is.VL3, "seq", is.Seq,
				"took", time.Since(t0).Round(time.Millisecond))
			var wg sync.WaitGroup
			defer wg.Wait() // after the cancel below
			fctx, cancel := context.WithCancel(ctx)
			defer cancel()
			wg.Go(func() { ix.Follow(fctx) })

			log.Info("portolan serving SVP", "listen", ln.Addr().String(), "log-hold", logHold, "pid", os.Getpid())
			if noOwnership {
				log.Warn("--no-ownership-check: any client may read and remove any host's log")
			}
			srv := &portolan.Server{Store: st, Lookups: ix, LogHold: logHold, Log: log, NoOwnershipCheck: noOwnership}
			if aln != nil {
				hs := &http.Server{Handler: adminMux(srv, ix, log), ReadHeaderTimeout: 10 * time.Second}
				wg.Go(func() {
					if err := hs.Serve(aln); err != nil && !errors.Is(err, http.ErrServerClosed) {
						log.Error("admin listener failed", "err", err)
					}
				})
				defer hs.Close()
				log.Info("admin endpoint", "listen", aln.Addr().String(), "paths", "/metrics /index /debug/pprof/")
			}
			if apiLn != nil {
				as := &api.Server{Store: st, Token: token, OpenReads: apiOpenReads, Log: log}
				hs := &http.Server{Handler: as.Handler(), ReadHeaderTimeout: 10 * time.Second}
				wg.Go(func() {
					var err error
					if apiCert != "" {
						err = hs.ServeTLS(apiLn, apiCert, apiKey)
					} else {
						err = hs.Serve(apiLn)
					}
					if err != nil && !errors.Is(err, http.ErrServerClosed) {
						log.Error("API listener failed", "err", err)
					}
				})
				defer hs.Close()
				log.Info("API endpoint", "listen", apiLn.Addr().String(), "tls", apiCert != "", "open_reads", apiOpenReads)
			}
			err = srv.Serve(ctx, ln)
			log.Info("portolan stopping", "requests", srv.Requests(), "refused", srv.Refused(), "seq", ix.Seq())
			return err
		},
	}
	c.Flags().StringVar(&listen, "listen", fmt.Sprintf(":%d", svpwire.DefaultPort), "TCP address to listen on")
	c.Flags().StringVar(&admin, "admin", "", "serve /metrics and /index over HTTP on this address (off by default)")
	c.Flags().StringVar(&apiAddr, "api", "", "serve the network admin API (HTTP/JSON) on this address (off by default)")
	c.Flags().StringVar(&apiTokenFile, "api-token-file", "", "file holding the token every API request must carry (required with --api)")
	c.Flags().BoolVar(&apiOpenReads, "api-open-reads", false, "let API reads (show-hosts, show-vnics) through without the token")
	c.Flags().StringVar(&apiCert, "api-tls-cert", "", "serve the API over HTTPS with this certificate (PEM; with --api-tls-key)")
	c.Flags().StringVar(&apiKey, "api-tls-key", "", "the certificate's private key (PEM)")
	c.Flags().DurationVar(&logHold, "log-hold", portolan.DefaultLogHold,
		fmt.Sprintf("hold a LOG_REQ that finds the log empty this long for an entry (0 to %v; 0 answers at once)", maxLogHold))
	c.Flags().StringVar(&logFormat, "log-format", "text", "log format: text or json")
	c.Flags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	c.Flags().BoolVar(&noOwnership, "no-ownership-check", false,
		"answer LOG_REQ and LOG_RM from any source address, trusting the underlay IP a client claims")
	return c
}

// checkLimits warns when this process cannot hold a connection per host
// of a large cloud: its file-descriptor limit (Go raises the soft limit
// to the hard one at start) or the kernel's accept backlog.
func checkLimits(log *slog.Logger) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && rl.Cur < wantConns+100 {
		log.Warn("the file-descriptor limit caps connections (one per host): raise it (LimitNOFILE=, ulimit -n)",
			"limit", rl.Cur, "hard", rl.Max, "want", wantConns+100)
	}
	if b, err := os.ReadFile("/proc/sys/net/core/somaxconn"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n < 1024 {
			log.Warn("net.core.somaxconn bounds the accept backlog: hosts reconnecting at once after a restart may be refused; raise it (sysctl net.core.somaxconn=4096)",
				"somaxconn", n)
		}
	}
}

// adminMux serves the admin endpoint: metrics and the index dump.
func adminMux(srv *portolan.Server, ix *index.Index, log *slog.Logger) *http.ServeMux {
	reg := prometheus.NewRegistry()
	gauge := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "portolan_" + name, Help: help}, f))
	}
	counter := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "portolan_" + name, Help: help}, f))
	}
	gauge("connections", "SVP connections open.", func() float64 { return float64(srv.Connections()) })
	counter("requests_total", "SVP requests answered.", func() float64 { return float64(srv.Requests()) })
	counter("refused_total", "LOG_REQ and LOG_RM refused by the ownership check.", func() float64 { return float64(srv.Refused()) })
	counter("closed_in_flight_total", "Connections their client closed with requests unanswered.",
		func() float64 { return float64(srv.ClosedInFlight()) })
	gauge("log_removals_pending", "Log entries LOG_RMs removed that the store still holds (written in the background; growing while the store fails).",
		func() float64 { return float64(srv.RemovalsPending()) })
	gauge("index_seq", "The last change of the store applied to the index.", func() float64 { return float64(ix.Seq()) })
	gauge("index_hosts", "Hosts in the index.", func() float64 { return float64(ix.Status().Hosts) })
	gauge("index_vl2", "VL2 mappings in the index.", func() float64 { return float64(ix.Status().VL2) })
	gauge("index_vl3", "VL3 mappings in the index.", func() float64 { return float64(ix.Status().VL3) })
	gauge("index_store_failing", "1 while reading the store's changes fails (the index answers from the last state read).",
		func() float64 {
			if ix.Status().Err != nil {
				return 1
			}
			return 0
		})
	counter("index_reloads_total", "Full reloads of the index after start.", func() float64 { return float64(ix.Status().Reloads) })
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	// Profiles, for finding what limits a loaded server.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace) // where goroutines wait: go tool trace
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /index", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := ix.Dump(w); err != nil {
			log.Warn("admin: writing the index dump failed", "err", err)
		}
	})
	return mux
}

// checkAPIFlags refuses API flags that do not hold together.
func checkAPIFlags(addr, tokenFile, cert, key string, openReads bool) error {
	switch {
	case addr == "" && (tokenFile != "" || cert != "" || key != "" || openReads):
		return errors.New("--api-token-file, --api-open-reads and --api-tls-* need --api ADDR:PORT")
	case addr != "" && tokenFile == "":
		return errors.New("--api needs --api-token-file FILE: a file holding the token clients send (e.g. head -c 32 /dev/urandom | base64 > FILE)")
	case (cert == "") != (key == ""):
		return errors.New("--api-tls-cert and --api-tls-key go together")
	}
	return nil
}

// readToken reads an API token file: its first line, which must not be
// empty.
func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--api-token-file: %w", err)
	}
	tok, _, _ := strings.Cut(string(b), "\n")
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", fmt.Errorf("--api-token-file %s: the file holds no token (write one on its first line)", path)
	}
	return tok, nil
}
