package settings

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The Set functions of the common kinds of settings: each takes the field
// of C it fills.

// String sets a text field as given.
func String[C any](field func(*C) *string) func(*C, string) error {
	return func(c *C, v string) error { *field(c) = v; return nil }
}

// Int sets an integer between lo and hi.
func Int[C any](field func(*C) *int, lo, hi int) func(*C, string) error {
	return func(c *C, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return fmt.Errorf("a number between %d and %d", lo, hi)
		}
		*field(c) = n
		return nil
	}
}

// Port sets a TCP port of at least lowest (0 picks a free port where that
// makes sense) and at most 65535.
func Port[C any](field func(*C) *int, lowest int) func(*C, string) error {
	return func(c *C, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < lowest || n > 65535 {
			return fmt.Errorf("a port is a number between %d and 65535", lowest)
		}
		*field(c) = n
		return nil
	}
}

// Duration sets a positive duration ("90s", "5m"), or zero too when
// zeroOK.
func Duration[C any](field func(*C) *time.Duration, zeroOK bool) func(*C, string) error {
	return func(c *C, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d == 0 && !zeroOK {
			return errors.New("a positive duration like 90s or 5m")
		}
		*field(c) = d
		return nil
	}
}

// List sets a comma-separated list (spaces around items and empty items
// dropped) that check accepts; an empty value is an empty list.
func List[C any](field func(*C) *[]string, check func([]string) error) func(*C, string) error {
	return func(c *C, v string) error {
		var list []string
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				list = append(list, s)
			}
		}
		if check != nil {
			if err := check(list); err != nil {
				return err
			}
		}
		*field(c) = list
		return nil
	}
}

// Durations sets a comma-separated list of durations ("0s,200ms,400ms");
// "" or "none" is a non-nil empty list, refused when needOne.
func Durations[C any](field func(*C) *[]time.Duration, needOne bool) func(*C, string) error {
	return func(c *C, v string) error {
		out := []time.Duration{}
		if v != "" && v != "none" {
			for _, s := range strings.Split(v, ",") {
				d, err := time.ParseDuration(strings.TrimSpace(s))
				if err != nil || d < 0 {
					return errors.New("a comma-separated list of durations like 0s,200ms,400ms")
				}
				out = append(out, d)
			}
		}
		if needOne && len(out) == 0 {
			return errors.New("at least one delay is needed (the first attempt's)")
		}
		*field(c) = out
		return nil
	}
}
