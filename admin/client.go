package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"
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
	// Timeout bounds one request; zero means 30 seconds.
	Timeout time.Duration
}

// Call sends one request and decodes the result into result (which may be
// nil).
func (c *Client) Call(method string, params, result any) error {
	timeout := c.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
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
		return fmt.Errorf("send request to overlayd: %w", err)
	}
	var rep Reply
	if err := json.NewDecoder(conn).Decode(&rep); err != nil {
		return fmt.Errorf("read reply from overlayd: %w", err)
	}
	if rep.Error != "" {
		return &Error{Msg: rep.Error, notFound: rep.NotFound}
	}
	if result != nil && len(rep.Result) > 0 {
		return json.Unmarshal(rep.Result, result)
	}
	return nil
}

func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Err
	}
	return err
}
