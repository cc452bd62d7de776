package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"overlaynet/ether"
	"overlaynet/portolan/store"
)

// Client speaks the admin API to a portolan server.
type Client struct {
	// URL is the server's base address, e.g. https://portolan:1297.
	URL   string
	Token string
	// HTTP is the client to use (TLS settings, timeouts); nil: a default.
	HTTP *http.Client
}

// Error is a request the server refused or failed. errors.Is matches it
// with the store's errors and ErrInvalid by its status.
type Error struct {
	Status int
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

// Is implements errors.Is.
func (e *Error) Is(target error) bool {
	switch e.Status {
	case http.StatusBadRequest:
		return target == ErrInvalid
	case http.StatusNotFound:
		return target == store.ErrNotFound
	case http.StatusConflict:
		return target == store.ErrExists || target == store.ErrInUse
	}
	return false
}

// ErrAuth is matched by refusals for a missing or wrong token.
var ErrAuth = errors.New("not authorized")

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.URL, "/")+path, rd)
	if err != nil {
		return fmt.Errorf("portolan API %s: %w", c.URL, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("portolan API %s: %w", c.URL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("portolan API %s: %w", c.URL, err)
	}
	if resp.StatusCode >= 300 {
		var eb errorBody
		if json.Unmarshal(data, &eb) != nil || eb.Error == "" {
			eb.Error = fmt.Sprintf("%s %s: %s", method, path, resp.Status)
		}
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			return fmt.Errorf("portolan API %s: %w: %s", c.URL, ErrAuth, eb.Error)
		}
		return &Error{Status: resp.StatusCode, Msg: eb.Error}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("portolan API %s: bad reply to %s %s: %w", c.URL, method, path, err)
		}
	}
	return nil
}

func vnicPath(vnetid uint32, mac ether.MAC) string {
	return "/v1/vnics/" + strconv.FormatUint(uint64(vnetid), 10) + "/" + url.PathEscape(ether.Short(mac))
}

// SetHost adds a host or changes its address, port and sources
// (add-host).
func (c *Client) SetHost(ctx context.Context, id string, req HostRequest) error {
	return c.do(ctx, http.MethodPut, "/v1/hosts/"+url.PathEscape(id), req, nil)
}

// RemoveHost removes a host that holds no VNIC (remove-host).
func (c *Client) RemoveHost(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/hosts/"+url.PathEscape(id), nil, nil)
}

// Hosts lists the hosts (show-hosts).
func (c *Client) Hosts(ctx context.Context) ([]HostInfo, error) {
	var out []HostInfo
	return out, c.do(ctx, http.MethodGet, "/v1/hosts", nil, &out)
}

// AddVNIC adds a VNIC (add-vnic).
func (c *Client) AddVNIC(ctx context.Context, vnetid uint32, mac ether.MAC, req VNICRequest) error {
	return c.do(ctx, http.MethodPut, vnicPath(vnetid, mac), req, nil)
}

// MoveVNIC moves a VNIC to another host (move-vnic).
func (c *Client) MoveVNIC(ctx context.Context, vnetid uint32, mac ether.MAC, host string) error {
	return c.do(ctx, http.MethodPost, vnicPath(vnetid, mac)+"/move", MoveRequest{Host: host}, nil)
}

// RemoveVNIC removes a VNIC (remove-vnic).
func (c *Client) RemoveVNIC(ctx context.Context, vnetid uint32, mac ether.MAC) error {
	return c.do(ctx, http.MethodDelete, vnicPath(vnetid, mac), nil, nil)
}

// VNICs lists the VNICs of one network, or of all when all is set
// (show-vnics).
func (c *Client) VNICs(ctx context.Context, vnetid uint32, all bool) ([]VNICInfo, error) {
	path := "/v1/vnics"
	if !all {
		path += "?vnetid=" + strconv.FormatUint(uint64(vnetid), 10)
	}
	var out []VNICInfo
	return out, c.do(ctx, http.MethodGet, path, nil, &out)
}
