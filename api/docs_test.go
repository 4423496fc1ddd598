package api

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestErrorCodesDocumented keeps docs/errors.md in step with the codes: each
// defined code has a row there with its HTTP status, and each row names a
// defined code.
func TestErrorCodesDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "errors.md"))
	require.NoError(t, err)
	rows := regexp.MustCompile("(?m)^\\| `([A-Z_]+)` \\| ([0-9]{3}) \\|").FindAllStringSubmatch(string(doc), -1)
	require.NotEmpty(t, rows, "docs/errors.md has rows like | `CODE` | 404 | …")
	documented := map[Code]int{}
	for _, r := range rows {
		code := Code(r[1])
		_, dup := documented[code]
		assert.False(t, dup, "%s has two rows in docs/errors.md", code)
		documented[code], _ = strconv.Atoi(r[2])
	}
	for _, c := range Codes() {
		status, ok := documented[c]
		if assert.True(t, ok, "docs/errors.md does not explain %s: add a row for it", c) {
			assert.Equal(t, c.HTTPStatus(), status, "the HTTP status of %s in docs/errors.md", c)
		}
	}
	for c := range documented {
		assert.True(t, slices.Contains(Codes(), c), "docs/errors.md explains %s, which is not a code (any more)", c)
	}
}
