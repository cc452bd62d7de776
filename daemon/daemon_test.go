package daemon

import (
	"bytes"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "overlaynet/plugins" // the data paths, as overlayd links them
)

// TestFlagsCheckedFirst: a bad flag or flag value exits 2 with a message
// naming it, and creates nothing: no state directory, no socket.
func TestFlagsCheckedFirst(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--metrics", "bogus"}, 2, `--metrics "bogus": want ADDR:PORT`},
		{[]string{"--metrics", "127.0.0.1:99999"}, 2, `--metrics "127.0.0.1:99999": port "99999" is not a number from 1 to 65535`},
		{[]string{"--metrics", "127.0.0.1:0"}, 2, `--metrics "127.0.0.1:0": port "0" is not a number from 1 to 65535`},
		{[]string{"--metrics", "no-such-host.invalid:9790"}, 1, "--metrics no-such-host.invalid:9790: listen tcp"},
		{[]string{"--socket-group", "no-such-group-xyz"}, 2, `--socket-group "no-such-group-xyz"`},
		{[]string{"--metrics", taken.Addr().String()}, 1, "--metrics " + taken.Addr().String() + ": listen tcp"},
		{[]string{"--workers", "0"}, 2, "--workers 0: want 1 to 64"},
		{[]string{"--worker-sched", "fast"}, 2, `--worker-sched "fast": want batch or normal`},
		{[]string{"--default-datapath", "ebpf"}, 2, `--default-datapath "ebpf": want one of kernel, userspace`},
		{[]string{"--svp-log-delay", "1h"}, 2, "--svp-log-delay 1h0m0s"},
		{[]string{"--log-level", "loud"}, 2, `--log-level "loud"`},
		{[]string{"--log-format", "xml"}, 2, `--log-format "xml"`},
		{[]string{"--bogus"}, 2, "unknown flag: --bogus"},
		{[]string{"--workers", "x"}, 2, `invalid argument "x" for "--workers"`},
		{[]string{"extra"}, 2, `unknown command "extra"`},
	} {
		dir := t.TempDir()
		stateDir, sock := filepath.Join(dir, "state"), filepath.Join(dir, "sock")
		var out, errb bytes.Buffer
		args := append([]string{"--state-dir", stateDir, "--socket", sock}, tc.args...)
		code := Main(args, &out, &errb)
		if code != tc.code {
			t.Errorf("%q: exit %d, want %d (stderr %q)", tc.args, code, tc.code, errb.String())
		}
		if !strings.HasPrefix(errb.String(), "overlayd: ") || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%q: stderr %q, want \"overlayd: \" and %q", tc.args, errb.String(), tc.want)
		}
		if tc.code == 2 && !strings.Contains(errb.String(), "\nusage: overlayd ") {
			t.Errorf("%q: a usage error without the usage line: %q", tc.args, errb.String())
		}
		for _, p := range []string{stateDir, sock} {
			if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%q: %s was created (%v)", tc.args, p, err)
			}
		}
	}
}

// TestHelpOnStdout: --help prints on stdout and exits 0.
func TestHelpOnStdout(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main([]string{"--help"}, &out, &errb); code != 0 || errb.Len() != 0 {
		t.Fatalf("--help: exit %d, stderr %q", code, errb.String())
	}
	if !strings.Contains(out.String(), "Usage:\n  overlayd") {
		t.Errorf("--help on stdout: %q", out.String())
	}
	// What happens to VNICs on a stop, said once and rightly.
	if h := out.String(); strings.Contains(h, "its VNICs go with it") || !strings.Contains(h, "The interfaces of\npersistent VNICs (created without -t) stay") {
		t.Errorf("--help on what a stop does to VNICs:\n%s", h)
	}
}
