package overlay

import "fmt"

// Name limits (SPEC section 4). Overlay names are not interface names, so
// they may be longer; VNIC names are Linux interface names.
const (
	MaxOverlayName = 31
	MaxVNICName    = 15
)

// checkName applies the illumos link-name rules: letters, digits, '_' and
// '.', starting with a letter.
func checkName(kind, name string, max int) error {
	if name == "" {
		return fmt.Errorf("missing %s name", kind)
	}
	if len(name) > max {
		return fmt.Errorf("%s name %q is too long: at most %d characters", kind, name, max)
	}
	for i, c := range name {
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		ok := letter || i > 0 && (c >= '0' && c <= '9' || c == '_' || c == '.')
		if !ok {
			return fmt.Errorf("invalid %s name %q: use letters, digits, '_' and '.', starting with a letter", kind, name)
		}
	}
	return nil
}
