package userspace

import (
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// tap is one TAP device: the kernel side is the VNIC's network interface,
// this side reads the frames it transmits and writes the frames it
// receives, one frame per system call.
type tap struct {
	name string
	file *os.File
}

// openTAP creates the TAP interface name with the given MAC and MTU and
// sets it up. The interface lives as long as the file is open; the
// operator may move it into another network namespace meanwhile.
func openTAP(name string, mac net.HardwareAddr, mtu int) (*tap, error) {
	if _, err := netlink.LinkByName(name); err == nil {
		return nil, fmt.Errorf("a network interface named %s already exists", name)
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("interface name %q: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("create TAP %s: %w", name, err)
	}
	// os.NewFile on a non-blocking descriptor registers it with the
	// runtime poller, so blocked reads park a goroutine, not a thread.
	t := &tap{name: name, file: os.NewFile(uintptr(fd), "/dev/net/tun:"+name)}
	if err := t.configure(mac, mtu); err != nil {
		t.close()
		return nil, err
	}
	return t, nil
}

func (t *tap) configure(mac net.HardwareAddr, mtu int) error {
	link, err := netlink.LinkByName(t.name)
	if err != nil {
		return fmt.Errorf("find TAP %s: %w", t.name, err)
	}
	if err := netlink.LinkSetHardwareAddr(link, mac); err != nil {
		return fmt.Errorf("set MAC %s on %s: %w", mac, t.name, err)
	}
	if err := netlink.LinkSetMTU(link, mtu); err != nil {
		return fmt.Errorf("set MTU %d on %s: %w", mtu, t.name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", t.name, err)
	}
	return nil
}

// setMTU changes the interface MTU when the interface is still in our
// network namespace; once an operator has moved it elsewhere that
// namespace's owner decides.
func (t *tap) setMTU(mtu int) error {
	link, err := netlink.LinkByName(t.name)
	if err != nil {
		return fmt.Errorf("interface %s is no longer in overlayd's network namespace", t.name)
	}
	return netlink.LinkSetMTU(link, mtu)
}

func (t *tap) read(b []byte) (int, error) { return t.file.Read(b) }

func (t *tap) write(b []byte) error {
	_, err := t.file.Write(b)
	return err
}

func (t *tap) close() error { return t.file.Close() }

// isClosed reports whether err means the TAP was closed under a reader.
func isClosed(err error) bool { return errors.Is(err, os.ErrClosed) }
