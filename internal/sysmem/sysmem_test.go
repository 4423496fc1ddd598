package sysmem

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseMemAvailable(t *testing.T) {
	kb, err := ParseMemAvailable(strings.NewReader("MemTotal:       16318436 kB\nMemFree:         1234 kB\nMemAvailable:    8123456 kB\n"))
	require.NoError(t, err)
	assert.EqualValues(t, 8123456, kb)

	_, err = ParseMemAvailable(strings.NewReader("MemTotal: 1 kB\n"))
	assert.True(t, errors.Is(err, ErrUnknown), "%v", err)
	_, err = ParseMemAvailable(strings.NewReader("MemAvailable: many kB\n"))
	assert.ErrorContains(t, err, "unexpected MemAvailable line")
	_, err = ParseMemAvailable(strings.NewReader("MemAvailable: 12 MB\n"))
	assert.ErrorContains(t, err, "unexpected MemAvailable line")
}

func TestAvailable(t *testing.T) {
	n, err := Available()
	if errors.Is(err, ErrUnknown) {
		t.Skipf("this machine does not say: %v", err)
	}
	require.NoError(t, err)
	assert.Positive(t, n)
}
