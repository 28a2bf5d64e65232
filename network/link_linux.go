package network

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// deleteLink deletes the network device name (RTM_DELLINK); a missing device is not an
// error. Raw netlink keeps iproute2 and a netlink library out of the dependencies for
// this one call.
func deleteLink(name string) error {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("delete link %s: netlink socket: %w", name, err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("delete link %s: bind netlink: %w", name, err)
	}
	const hdr = unix.SizeofNlMsghdr + unix.SizeofIfInfomsg
	msg := make([]byte, hdr)
	nh := (*unix.NlMsghdr)(unsafe.Pointer(&msg[0]))
	*nh = unix.NlMsghdr{Len: hdr, Type: unix.RTM_DELLINK, Flags: unix.NLM_F_REQUEST | unix.NLM_F_ACK, Seq: 1}
	ii := (*unix.IfInfomsg)(unsafe.Pointer(&msg[unix.SizeofNlMsghdr]))
	*ii = unix.IfInfomsg{Family: unix.AF_UNSPEC, Index: int32(ifi.Index)}
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("delete link %s: %w", name, err)
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return fmt.Errorf("delete link %s: read ack: %w", name, err)
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil {
		return fmt.Errorf("delete link %s: parse ack: %w", name, err)
	}
	for _, m := range msgs {
		if m.Header.Type != unix.NLMSG_ERROR || len(m.Data) < 4 {
			continue
		}
		// The ack carries 0 or a negated errno.
		if e := -int32(*(*int32)(unsafe.Pointer(&m.Data[0]))); e != 0 && !errors.Is(unix.Errno(e), unix.ENODEV) {
			return fmt.Errorf("delete link %s: %w", name, unix.Errno(e))
		}
	}
	return nil
}
