package sshx

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// ErrUnknownPlatform reports uname output that names no Go platform.
var ErrUnknownPlatform = errors.New("sshx: unknown platform")

// Platform is an operating system and architecture in Go's names
// (GOOS/GOARCH), as in "linux/amd64".
type Platform struct {
	OS   string
	Arch string
}

// String returns "os/arch".
func (p Platform) String() string { return p.OS + "/" + p.Arch }

// Uname runs "uname -sm" on the node and returns its platform.
func (c *Client) Uname(ctx context.Context) (Platform, error) {
	out, err := c.Output(ctx, "uname", "-sm")
	if err != nil {
		return Platform{}, err
	}
	return ParseUname(out)
}

var unameOS = map[string]string{
	"linux":     "linux",
	"darwin":    "darwin",
	"freebsd":   "freebsd",
	"openbsd":   "openbsd",
	"netbsd":    "netbsd",
	"dragonfly": "dragonfly",
	"sunos":     "solaris",
	"aix":       "aix",
}

var unameArch = map[string]string{
	"x86_64":      "amd64",
	"amd64":       "amd64",
	"aarch64":     "arm64",
	"arm64":       "arm64",
	"i386":        "386",
	"i486":        "386",
	"i586":        "386",
	"i686":        "386",
	"armv5l":      "arm",
	"armv6l":      "arm",
	"armv7l":      "arm",
	"armv8l":      "arm",
	"riscv64":     "riscv64",
	"ppc64le":     "ppc64le",
	"ppc64":       "ppc64",
	"s390x":       "s390x",
	"loongarch64": "loong64",
}

// ParseUname turns the output of "uname -sm" ("Linux x86_64",
// "Darwin arm64") into a Platform, or fails with ErrUnknownPlatform.
func ParseUname(out string) (Platform, error) {
	f := strings.Fields(out)
	if len(f) != 2 {
		return Platform{}, fmt.Errorf("%w: uname said %q", ErrUnknownPlatform, out)
	}
	goos, ok1 := unameOS[strings.ToLower(f[0])]
	arch, ok2 := unameArch[strings.ToLower(f[1])]
	if !ok1 || !ok2 {
		return Platform{}, fmt.Errorf("%w: uname said %q", ErrUnknownPlatform, strings.TrimSpace(out))
	}
	return Platform{OS: goos, Arch: arch}, nil
}
