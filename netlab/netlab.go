// Package netlab builds simulated hosts for tests, the demo and the
// benchmark: network namespaces joined by veth links, overlayd processes
// inside them, and guest namespaces holding VNICs. Everything a Lab makes
// is named with a prefix unique to the process, so parallel test packages
// do not collide, and Close removes all of it.
package netlab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netns"
)

var labSeq atomic.Uint32

// Lab is a set of namespaces and processes that are torn down together.
type Lab struct {
	// Bin is the directory holding the overlayd and overlayadm binaries.
	Bin string
	// Dir is a scratch directory for sockets, state and logs.
	Dir string

	// Switch is the namespace holding the underlay bridge of Hosts.
	Switch *NS

	prefix string
	ports  int // switch ports made by SwitchPort
	mu     sync.Mutex
	ns     []*NS
	procs  []*Proc
	// cleanups run at Close, after the processes stop.
	cleanups []func()
}

// cleanup registers fn to run at Close, after the processes stop.
func (l *Lab) cleanup(fn func()) {
	l.mu.Lock()
	l.cleanups = append(l.cleanups, fn)
	l.mu.Unlock()
}

// New returns an empty lab using the binaries in bin.
func New(bin string) (*Lab, error) {
	dir, err := os.MkdirTemp("", "netlab-")
	if err != nil {
		return nil, err
	}
	return &Lab{Bin: bin, Dir: dir,
		prefix: fmt.Sprintf("nl%d-%d-", os.Getpid(), labSeq.Add(1))}, nil
}

// Build compiles overlayd, overlayadm, portolan and overlay-cni into dir,
// with the CNI host-local IPAM plugin and the portmap and bandwidth
// plugins of the containernetworking/plugins module (tools of this
// module: Debian's are too old for spec 1.1) and cnitool, and returns dir. It runs from the module that holds this package.
func Build(dir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/overlayd", "./cmd/overlayadm", "./cmd/portolan", "./cmd/overlay-cni",
		"github.com/containernetworking/plugins/plugins/ipam/host-local", "github.com/containernetworking/plugins/plugins/meta/portmap",
		"github.com/containernetworking/plugins/plugins/meta/bandwidth", "github.com/containernetworking/cni/cnitool")
	cmd.Dir = root
	// Without cgo, as deployed: overlayd can then drop capabilities in
	// every thread.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return dir, nil
}

func moduleRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if ok {
		if root := filepath.Dir(filepath.Dir(file)); fileExists(filepath.Join(root, "go.mod")) {
			return root, nil
		}
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		return "", fmt.Errorf("cannot find the module root")
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// Close stops every process and deletes every namespace (and with them
// every link and TAP inside), then the scratch directory.
func (l *Lab) Close() {
	l.mu.Lock()
	procs, nss, cleanups := l.procs, l.ns, l.cleanups
	l.procs, l.ns, l.cleanups = nil, nil, nil
	l.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Stop()
	}
	for _, fn := range cleanups {
		fn()
	}
	for i := len(nss) - 1; i >= 0; i-- {
		exec.Command("ip", "netns", "del", nss[i].Name).Run()
		os.RemoveAll(filepath.Join("/etc/netns", nss[i].Name))
	}
	os.RemoveAll(l.Dir)
}

// NS is a network namespace of the lab.
type NS struct {
	// Name is the namespace's name under /run/netns.
	Name string
	lab  *Lab
}

// Namespace creates a namespace with loopback up. short names it within
// the lab.
func (l *Lab) Namespace(short string) (*NS, error) {
	n := &NS{Name: l.prefix + short, lab: l}
	if out, err := exec.Command("ip", "netns", "add", n.Name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add %s: %v: %s", n.Name, err, out)
	}
	l.mu.Lock()
	l.ns = append(l.ns, n)
	l.mu.Unlock()
	if _, err := n.IP("link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	return n, nil
}

// Link joins a and b with a veth pair named ifname in both, with the
// given addresses (CIDR notation), and sets both ends up.
func (l *Lab) Link(a *NS, aAddr string, b *NS, bAddr, ifname string) error {
	if _, err := a.IP("link", "add", ifname, "type", "veth", "peer", "name", ifname, "netns", b.Name); err != nil {
		return err
	}
	for _, e := range []struct {
		ns   *NS
		addr string
	}{{a, aAddr}, {b, bAddr}} {
		if _, err := e.ns.IP("addr", "add", e.addr, "dev", ifname); err != nil {
			return err
		}
		if _, err := e.ns.IP("link", "set", ifname, "up"); err != nil {
			return err
		}
	}
	return nil
}

// IP runs "ip -n <ns> args...".
func (n *NS) IP(args ...string) (string, error) {
	return run("ip", append([]string{"-n", n.Name}, args...)...)
}

// Exec runs a command inside the namespace and returns its output.
func (n *NS) Exec(args ...string) (string, error) {
	return run("ip", append([]string{"netns", "exec", n.Name}, args...)...)
}

// Command returns a command that runs inside the namespace.
func (n *NS) Command(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name}, args...)...)
}

// Do runs fn on a thread switched into the namespace: sockets fn opens
// belong to the namespace.
func (n *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread is left locked when the goroutine ends, so the
		// runtime discards it rather than reuse a thread in another
		// namespace.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		h, err := netns.GetFromName(n.Name)
		if err != nil {
			errc <- err
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- err
			return
		}
		err = fn()
		if serr := netns.Set(orig); serr == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// run runs a command and returns its standard output; its standard error
// goes into the error when it fails.
func run(name string, args ...string) (string, error) {
	var out, errOut bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout = &out
	cmd.Stderr = &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), nil
}

// Proc is a background process of the lab.
type Proc struct {
	Cmd  *exec.Cmd
	Log  string // path of its combined output
	done chan struct{}
}

// Start starts a background process inside ns, logging to a file in the
// lab directory.
func (l *Lab) Start(ns *NS, logName string, args ...string) (*Proc, error) {
	return l.StartEnv(ns, logName, nil, args...)
}

// StartEnv is Start with extra environment variables ("NAME=value").
func (l *Lab) StartEnv(ns *NS, logName string, env []string, args ...string) (*Proc, error) {
	logPath := filepath.Join(l.Dir, logName+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	p := &Proc{Cmd: cmd, Log: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); f.Close(); close(p.done) }()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p, nil
}

// Stop ends the process: SIGTERM, then SIGKILL after five seconds.
func (p *Proc) Stop() {
	if p.Cmd.Process == nil {
		return
	}
	p.Cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.Cmd.Process.Kill()
		<-p.done
	}
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Output returns what the process has logged so far.
func (p *Proc) Output() string {
	b, _ := os.ReadFile(p.Log)
	return string(b)
}
