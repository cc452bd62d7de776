package daemon

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// keptCapabilities are what overlayd still needs once it has restored its
// configuration:
//   - CAP_NET_ADMIN: create and configure TAP devices (TUNSETIFF,
//     TUNSETPERSIST, netlink link changes) and raise socket buffers past
//     the sysctl limits (SO_RCVBUFFORCE);
//   - CAP_NET_BIND_SERVICE: bind an underlay port below 1024, should an
//     operator choose one;
//   - CAP_NET_RAW: open the raw IP socket an NVGRE overlay (GRE straight
//     over IP, no ports) sends and receives on.
//
// Everything else goes, from the effective, permitted and bounding sets,
// and no_new_privs is set: notably CAP_SYS_ADMIN, which overlayd needs
// only at startup to enter other network namespaces and take over the
// VNICs a previous overlayd left there, and CAP_DAC_OVERRIDE, so files
// are read and written with the permissions of root's own uid.
var keptCapabilities = []uint{unix.CAP_NET_ADMIN, unix.CAP_NET_BIND_SERVICE, unix.CAP_NET_RAW}

// dropPrivileges drops every capability but keptCapabilities, in every
// thread. It reports why it could not, for example in a build with cgo,
// where the runtime cannot change all threads at once.
func dropPrivileges() error {
	last := lastCap()
	kept := map[uint]bool{}
	for _, c := range keptCapabilities {
		kept[c] = true
	}
	// The bounding set first: dropping from it needs CAP_SETPCAP, which
	// the capset below gives up.
	for c := uint(0); c <= last; c++ {
		if kept[c] {
			continue
		}
		if _, _, e := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0); e != 0 {
			if e == syscall.EINVAL {
				continue // a capability this kernel does not know
			}
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, e)
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	for _, c := range keptCapabilities {
		data[c/32].Effective |= 1 << (c % 32)
		data[c/32].Permitted |= 1 << (c % 32)
	}
	if _, _, e := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
		return fmt.Errorf("capset: %w", e)
	}
	if _, _, e := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); e != 0 {
		return fmt.Errorf("no_new_privs: %w", e)
	}
	return nil
}

// lastCap is the highest capability this kernel knows.
func lastCap() uint {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			return uint(n)
		}
	}
	return unix.CAP_LAST_CAP
}

// errCgo explains the one expected failure.
func explainDrop(err error) string {
	if errors.Is(err, syscall.ENOTSUP) {
		return "this overlayd was built with cgo, which keeps the runtime from changing every thread's capabilities; build with CGO_ENABLED=0"
	}
	return err.Error()
}
