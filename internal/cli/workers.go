package cli

import (
	"context"
	"errors"
)

// runWorkers is being written (issue 3).
func runWorkers(ctx context.Context, env *Env, args []string) error {
	return errors.New("rbee workers is not implemented yet")
}
