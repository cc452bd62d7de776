package bench

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// clockTick is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux that matters.
const clockTick = 100

// cpuTime is a process's user plus system CPU time so far, from
// /proc/PID/stat (0 if it cannot be read).
func cpuTime(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name is in parentheses and may hold spaces: fields
	// are counted after its closing one. utime and stime are fields 14
	// and 15, the 12th and 13th after it.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * time.Second / clockTick
}

// selfCPU is this process's user plus system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// listenDrops returns TcpExt ListenOverflows + ListenDrops from
// /proc/net/netstat: SYNs or connections the kernel dropped because a
// listen queue was full.
func listenDrops() uint64 {
	data, err := os.ReadFile("/proc/net/netstat")
	if err != nil {
		return 0
	}
	lines := strings.Split(string(data), "\n")
	var total uint64
	for i := 0; i+1 < len(lines); i++ {
		if !strings.HasPrefix(lines[i], "TcpExt:") || !strings.HasPrefix(lines[i+1], "TcpExt:") {
			continue
		}
		names, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		for j := 1; j < len(names) && j < len(vals); j++ {
			if names[j] == "ListenOverflows" || names[j] == "ListenDrops" {
				v, _ := strconv.ParseUint(vals[j], 10, 64)
				total += v
			}
		}
		break
	}
	return total
}

// cpuSplit is how the svp benchmark shares the machine: the server on
// one CPU, the load generator on the others.
type cpuSplit struct {
	server  int         // the server's CPU, -1 when not pinned
	client  unix.CPUSet // the load generator's CPUs
	orig    unix.CPUSet // this process's affinity before
	maxProc int         // GOMAXPROCS before
	note    string      // how the server was constrained, for the output
	pinned  bool
}

// splitCPUs pins every thread of this process to all allowed CPUs but
// the last, which it keeps for the server (started with startOn), and
// sets GOMAXPROCS to match. With one CPU nothing is pinned. restore
// undoes it.
func splitCPUs() *cpuSplit {
	s := &cpuSplit{server: -1, maxProc: runtime.GOMAXPROCS(0)}
	if err := unix.SchedGetaffinity(0, &s.orig); err != nil || s.orig.Count() < 2 {
		s.note = "server GOMAXPROCS=1 (not pinned: fewer than 2 CPUs or no affinity); load generator in this process"
		return s
	}
	var cpus []int
	for c := 0; c < 1024; c++ {
		if s.orig.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	s.server = cpus[len(cpus)-1]
	for _, c := range cpus[:len(cpus)-1] {
		s.client.Set(c)
	}
	if err := setAllThreads(&s.client); err != nil {
		s.note = fmt.Sprintf("server GOMAXPROCS=1 (pinning failed: %v); load generator in this process", err)
		s.server = -1
		setAllThreads(&s.orig)
		return s
	}
	s.pinned = true
	runtime.GOMAXPROCS(s.client.Count())
	s.note = fmt.Sprintf("server GOMAXPROCS=1 and pinned to CPU %d; load generator in this process on CPU %s (GOMAXPROCS=%d)",
		s.server, cpuList(cpus[:len(cpus)-1]), s.client.Count())
	return s
}

// clientCPUs is how many CPUs the load generator has.
func (s *cpuSplit) clientCPUs() int {
	if s.pinned {
		return s.client.Count()
	}
	return runtime.NumCPU()
}

func cpuList(cs []int) string {
	var b []string
	for _, c := range cs {
		b = append(b, strconv.Itoa(c))
	}
	return strings.Join(b, ",")
}

func (s *cpuSplit) restore() {
	if s.pinned {
		setAllThreads(&s.orig)
	}
	runtime.GOMAXPROCS(s.maxProc)
}

// setAllThreads sets the affinity of every thread of this process;
// threads created later inherit it from their creator.
func setAllThreads(set *unix.CPUSet) error {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, set); err != nil && err != unix.ESRCH {
			return err
		}
	}
	return nil
}

// startOn starts cmd (with this process's environment, then cmd.Env)
// with GOMAXPROCS=1 and, when the split pinned, on the
// server's CPU alone: the child inherits the affinity of the thread that
// forks it, so this thread is locked and pinned around Start.
func (s *cpuSplit) startOn(cmd *exec.Cmd) error {
	cmd.Env = append(append(os.Environ(), cmd.Env...), "GOMAXPROCS=1")
	if !s.pinned {
		return cmd.Start()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var one unix.CPUSet
	one.Set(s.server)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		return err
	}
	err := cmd.Start()
	unix.SchedSetaffinity(0, &s.client)
	return err
}
