package cli

import (
	"context"
	"errors"
)

// runInfer is being written (issue 3).
func runInfer(ctx context.Context, env *Env, args []string) error {
	return errors.New("rbee infer is not implemented yet")
}
