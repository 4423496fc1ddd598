package cli

import (
	"context"
	"errors"
)

// runSetup is being written (issue 3).
func runSetup(ctx context.Context, env *Env, args []string) error {
	return errors.New("rbee setup is not implemented yet")
}
