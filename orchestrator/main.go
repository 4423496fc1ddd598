package orchestrator

import (
	"context"
	"errors"
	"io"
)

// Main runs the daemon from its command line until ctx ends (being written, issue 3).
func Main(ctx context.Context, args []string, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
