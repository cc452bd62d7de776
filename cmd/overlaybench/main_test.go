package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMain runs main itself when asked to, so that the tests can run the
// program as a user does.
func TestMain(m *testing.M) {
	if os.Getenv("OVERLAYBENCH_TEST_MAIN") == "1" {
		os.Args = append([]string{"overlaybench"}, strings.Fields(os.Getenv("OVERLAYBENCH_TEST_ARGS"))...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runBench(t *testing.T, args string) (int, string, string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "OVERLAYBENCH_TEST_MAIN=1", "OVERLAYBENCH_TEST_ARGS="+args)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

// TestUsage: --help prints on stdout and exits 0; a wrong mode or a flag
// after the mode is a usage error on stderr, exit 2, naming the problem.
func TestUsage(t *testing.T) {
	code, out, errs := runBench(t, "--help")
	if code != 0 || !strings.Contains(out, "usage: overlaybench [flags]") || !strings.Contains(out, "-lookup-rate") || errs != "" {
		t.Errorf("--help: exit %d, stderr %q, stdout %d bytes", code, errs, len(out))
	}
	code, out, errs = runBench(t, "bogus")
	if code != 2 || out != "" || !strings.Contains(errs, `unknown mode "bogus"`) {
		t.Errorf("bogus: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, _, errs = runBench(t, "svp -quick")
	if code != 2 || !strings.Contains(errs, "flags go before the mode") {
		t.Errorf("svp -quick: exit %d, stderr %q", code, errs)
	}
}
