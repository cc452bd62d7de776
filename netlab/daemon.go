package netlab

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ExtraArgsEnv names an environment variable whose words are added to
// every overlayd the lab starts: the test suite runs again with
// "--offloads=false" this way.
const ExtraArgsEnv = "NETLAB_OVERLAYD_ARGS"

// Daemon is an overlayd running in a lab namespace.
type Daemon struct {
	Host   *NS
	Socket string
	Proc   *Proc
	lab    *Lab
}

// StartDaemon starts overlayd in host and waits until its admin socket
// answers.
func (l *Lab) StartDaemon(host *NS, extra ...string) (*Daemon, error) {
	return l.StartDaemonEnv(host, nil, extra...)
}

// StartDaemonEnv is StartDaemon with extra environment variables.
func (l *Lab) StartDaemonEnv(host *NS, env []string, extra ...string) (*Daemon, error) {
	short := strings.TrimPrefix(host.Name, l.prefix)
	sock := filepath.Join(l.Dir, short+".sock")
	args := append([]string{filepath.Join(l.Bin, "overlayd"), "--socket", sock,
		"--state-dir", filepath.Join(l.Dir, short+".state"), "--log-level", "debug"}, extra...)
	args = append(args, strings.Fields(os.Getenv(ExtraArgsEnv))...)
	p, err := l.StartEnv(host, "overlayd-"+short, env, args...)
	if err != nil {
		return nil, err
	}
	d := &Daemon{Host: host, Socket: sock, Proc: p, lab: l}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		// The socket listens before the saved overlays and VNICs are
		// restored (so that a second daemon is refused before it touches
		// them), and requests are answered only once they are: then
		// traffic can flow.
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			if _, err := d.Adm("show-overlay"); err == nil {
				return d, nil
			}
		}
		if p.Exited() {
			return nil, fmt.Errorf("overlayd in %s exited: %s", host.Name, p.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, fmt.Errorf("overlayd in %s did not answer on %s within 10 s: %s", host.Name, sock, p.Output())
}

// Adm runs overlayadm against the daemon and returns its standard output;
// on failure the error holds the standard error.
func (d *Daemon) Adm(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(d.lab.Bin, "overlayadm"), append([]string{"--socket", d.Socket}, args...)...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("overlayadm %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Stat returns one counter of an overlay (show-overlay -s).
func (d *Daemon) Stat(overlay, name string) (uint64, error) {
	return d.parseStat(name, "show-overlay", "-s", "-p", "-o", "statistic,value", overlay)
}

// ListenerStat returns one counter summed over the daemon's listeners.
func (d *Daemon) ListenerStat(name string) (uint64, error) {
	return d.parseStat(name, "show-listener", "-p", "-o", "statistic,value")
}

func (d *Daemon) parseStat(name string, args ...string) (uint64, error) {
	out, err := d.Adm(args...)
	if err != nil {
		return 0, err
	}
	var sum uint64
	found := false
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && k == name {
			if v == "" {
				return 0, fmt.Errorf("counter %s is not kept by this overlay's data path (shown as --)", name)
			}
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("counter %s: %q", name, v)
			}
			sum += n
			found = true
		}
	}
	if !found {
		return 0, fmt.Errorf("no counter %s in %q", name, out)
	}
	return sum, nil
}

// VNICMAC returns the MAC of a VNIC as show-vnic prints it.
func (d *Daemon) VNICMAC(vnic string) (string, error) {
	out, err := d.Adm("show-vnic", "-p", "-o", "macaddress", vnic)
	if err != nil {
		return "", err
	}
	return strings.ReplaceAll(strings.TrimSpace(out), `\:`, ":"), nil
}

// Guest makes a namespace for the user of a VNIC: it moves the VNIC's
// interface from the daemon's namespace into it, adds the addresses
// (CIDR) and sets it up. With no IPv6 address given, IPv6 is disabled in
// the guest so that it sends no multicast of its own.
func (d *Daemon) Guest(short, vnic string, addrs ...string) (*NS, error) {
	g, err := d.lab.Namespace(short)
	if err != nil {
		return nil, err
	}
	v6 := false
	for _, a := range addrs {
		if strings.Contains(a, ":") {
			v6 = true
		}
	}
	if !v6 {
		for _, k := range []string{"all", "default"} {
			if _, err := g.Exec("sysctl", "-qw", "net.ipv6.conf."+k+".disable_ipv6=1"); err != nil {
				return nil, err
			}
		}
	}
	if _, err := d.Host.IP("link", "set", vnic, "netns", g.Name); err != nil {
		return nil, err
	}
	for _, a := range addrs {
		args := []string{"addr", "add", a, "dev", vnic}
		if strings.Contains(a, ":") {
			args = append(args, "nodad")
		}
		if _, err := g.IP(args...); err != nil {
			return nil, err
		}
	}
	if _, err := g.IP("link", "set", vnic, "up"); err != nil {
		return nil, err
	}
	return g, nil
}

// Ping pings addr from ns count times, 0.1 s apart, and returns how many
// replies arrived.
func (n *NS) Ping(addr string, count int) (int, error) {
	out, _ := n.Exec("ping", "-c", strconv.Itoa(count), "-i", "0.1", "-W", "1", "-q", addr)
	m := received.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("ping %s from %s: unexpected output %q", addr, n.Name, out)
	}
	got, _ := strconv.Atoi(m[1])
	return got, nil
}

var received = regexp.MustCompile(`(\d+) received`)

// PingAll pings addr count times and fails unless every reply arrives.
func (n *NS) PingAll(addr string, count int) error {
	got, err := n.Ping(addr, count)
	if err != nil {
		return err
	}
	if got != count {
		return fmt.Errorf("ping %s from %s: %d of %d replies", addr, n.Name, got, count)
	}
	return nil
}

// Kill stops the daemon with SIGKILL, as a crash would, and waits for it.
func (d *Daemon) Kill() {
	d.Proc.Cmd.Process.Kill()
	<-d.Proc.done
}

// Restart starts a new overlayd in the same namespace over the same
// socket and state directory, and returns it.
func (d *Daemon) Restart(extra ...string) (*Daemon, error) {
	return d.lab.StartDaemon(d.Host, extra...)
}

// StateDir is the daemon's state directory.
func (d *Daemon) StateDir() string {
	return filepath.Join(d.lab.Dir, strings.TrimPrefix(d.Host.Name, d.lab.prefix)+".state")
}
