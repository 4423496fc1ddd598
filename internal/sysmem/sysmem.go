// Package sysmem reads how much memory the machine has available for new
// work, as Linux reports it.
package sysmem

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// ErrUnknown is wrapped by Available where the machine does not say
// (no /proc/meminfo, as on macOS).
var ErrUnknown = errors.New("available memory unknown")

// Available is the memory the kernel estimates is available for starting
// new programs without swapping (MemAvailable of /proc/meminfo), in bytes.
func Available() (int64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrUnknown, err)
	}
	defer f.Close()
	kb, err := ParseMemAvailable(f)
	if err != nil {
		return 0, err
	}
	return kb * 1024, nil
}

// ParseMemAvailable finds "MemAvailable: N kB" in /proc/meminfo's text and
// returns N.
func ParseMemAvailable(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemAvailable:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("/proc/meminfo: unexpected MemAvailable line %q", sc.Text())
		}
		n, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("/proc/meminfo: unexpected MemAvailable line %q", sc.Text())
		}
		return n, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("/proc/meminfo: %w", err)
	}
	return 0, fmt.Errorf("%w: /proc/meminfo has no MemAvailable line", ErrUnknown)
}
