package netlab

import (
	"encoding/binary"
	"fmt"
	"net"
	"overlaynet/ether"
	"time"

	"golang.org/x/sys/unix"
)

// SendFrames sends raw Ethernet frames out of the interface ifname in the
// namespace, at most perSecond a second (0: as fast as possible).
func (n *NS) SendFrames(ifname string, frames [][]byte, perSecond int) error {
	return n.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		defer unix.Close(fd)
		to := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}
		start := time.Now()
		for i, f := range frames {
			if perSecond > 0 {
				if due := start.Add(time.Duration(i) * time.Second / time.Duration(perSecond)); time.Until(due) > 0 {
					time.Sleep(time.Until(due))
				}
			}
			copy(to.Addr[:], f[:6])
			if err := unix.Sendto(fd, f, 0, to); err != nil && err != unix.ENOBUFS {
				return fmt.Errorf("send frame %d: %w", i, err)
			}
		}
		return nil
	})
}

// StormFrames builds count small IPv4/UDP frames from src, each to a
// different unicast MAC 2:99:xx:xx:xx:xx that no host has.
func StormFrames(src ether.MAC, count int) [][]byte {
	frames := make([][]byte, count)
	for i := range frames {
		f := make([]byte, 14+20+8+18)
		f[0], f[1] = 0x02, 0x99
		binary.BigEndian.PutUint32(f[2:6], uint32(i))
		copy(f[6:12], src[:])
		binary.BigEndian.PutUint16(f[12:14], 0x0800)
		ip := f[14:]
		ip[0], ip[8], ip[9] = 0x45, 64, 17
		binary.BigEndian.PutUint16(ip[2:4], uint16(len(ip)))
		copy(ip[12:16], []byte{10, 66, 0, 1})
		copy(ip[16:20], []byte{10, 66, byte(i >> 8), byte(i)})
		binary.BigEndian.PutUint16(ip[10:12], ipChecksum(ip[:20]))
		udp := ip[20:]
		binary.BigEndian.PutUint16(udp[0:2], 9)
		binary.BigEndian.PutUint16(udp[2:4], 9)
		binary.BigEndian.PutUint16(udp[4:6], uint16(len(udp)))
		frames[i] = f
	}
	return frames
}

func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(h[i])<<8 | uint32(h[i+1])
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
