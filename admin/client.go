package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNotFound is matched (errors.Is) by replies about objects that do not
// exist.
var ErrNotFound = errors.New("not found")

// Error is a request the daemon refused; its text is the daemon's.
type Error struct {
	Msg      string
	notFound bool
}

func (e *Error) Error() string { return e.Msg }

// Is makes errors.Is(err, ErrNotFound) work on refusals.
func (e *Error) Is(target error) bool { return target == ErrNotFound && e.notFound }

// Client talks to overlayd.
type Client struct {
	// Socket is the admin socket path.
	Socket string
	// Timeout bounds one request; zero means DefaultTimeout.
	Timeout time.Duration
}

// DefaultTimeout bounds a request when Client.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// Call sends one request and decodes the result into result (which may be
// nil).
func (c *Client) Call(method string, params, result any) error {
	timeout := c.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	conn, err := net.DialTimeout("unix", c.Socket, timeout)
	if err != nil {
		return fmt.Errorf("cannot reach overlayd at %s (is overlayd running?): %w", c.Socket, unwrapOp(err))
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	req := Request{Method: method}
	if params != nil {
		if req.Params, err = json.Marshal(params); err != nil {
			return err
		}
	}
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return c.failed(conn, "send the request to", timeout, err)
	}
	var rep Reply
	if err := json.NewDecoder(conn).Decode(&rep); err != nil {
		return c.failed(conn, "read the reply of", timeout, err)
	}
	if rep.Error != "" {
		return &Error{Msg: rep.Error, notFound: rep.NotFound}
	}
	if result != nil && len(rep.Result) > 0 {
		return json.Unmarshal(rep.Result, result)
	}
	return nil
}

// failed words a failed exchange: which daemon (the socket, and the pid
// of the process behind it) and, for a timeout, that it is not answering.
func (c *Client) failed(conn net.Conn, what string, timeout time.Duration, err error) error {
	who := "overlayd"
	if pid := peerPID(conn); pid > 0 {
		who = fmt.Sprintf("overlayd (pid %d)", pid)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%s at %s is not answering: no reply within %v (is it stopped or stuck? --timeout waits longer; a change asked for may still take effect: check before retrying)", who, c.Socket, timeout)
	}
	return fmt.Errorf("cannot %s %s at %s: %w", what, who, c.Socket, unwrapOp(err))
}

// peerPID returns the pid of the process on the other end of a Unix
// socket (SO_PEERCRED), 0 when not known.
func peerPID(conn net.Conn) int {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return 0
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return 0
	}
	pid := 0
	rc.Control(func(fd uintptr) {
		if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
			pid = int(cred.Pid)
		}
	})
	return pid
}

func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Err
	}
	return err
}
