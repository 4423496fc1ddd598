package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"strings"

	"rbee"
	"rbee/internal/config"
)

// The environment the keeper commands read.
const (
	envQueenURL = "RBEE_QUEEN_URL"
	envAPIKey   = "RBEE_API_KEY"
	envHome     = "RBEE_HOME"
)

// queenFlags is the one place where keeper commands learn how to reach the
// queen: the --queen-url flag beats $RBEE_QUEEN_URL beats [queen] url (or
// host and port) in the configuration file beats the default, and the
// token comes from $RBEE_API_KEY.
type queenFlags struct {
	url string
}

func addQueenFlags(fs *flag.FlagSet) *queenFlags {
	q := new(queenFlags)
	fs.StringVar(&q.url, "queen-url", "", "the queen's address (default $"+envQueenURL+", else "+rbee.DefaultURL+")")
	return q
}

// queen is a client for one queen, with the address it was built for and
// the configuration it was found with.
type queen struct {
	*rbee.Client
	url  *url.URL
	from string       // where the address came from
	file *config.File // the configuration file (Path "" when none)
	cenv config.Env
}

// client builds the queen client. A malformed address is a usage error; an
// unreadable or invalid configuration file is an error naming it.
func (q *queenFlags) client(env *Env) (*queen, error) {
	cenv := config.Env{Getenv: env.Getenv}
	file, err := config.Load(cenv)
	if err != nil {
		return nil, err
	}
	set := file.QueenURL(q.url, "--queen-url", cenv)
	u, err := config.ParseQueenURL(set.Value)
	if err != nil {
		return nil, usagef("%s: %q is not a queen address like %s", set.Source, set.Value, rbee.DefaultURL)
	}
	return &queen{Client: &rbee.Client{BaseURL: u.String(), Token: env.Getenv(envAPIKey)}, url: u, from: set.Source,
		file: file, cenv: cenv}, nil
}

// explain turns a failed call into what the user should read: the queen's
// own errors keep their message and hint; an unreachable queen says where
// it was looked for; bad tokens say which variable holds them.
func (q *queen) explain(err error) error {
	var e *rbee.Error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, rbee.ErrMissingAPIKey), errors.Is(err, rbee.ErrInvalidAPIKey):
		why := "the queen refused the API key in $" + envAPIKey
		if q.Token == "" {
			why = "the queen needs an API key and $" + envAPIKey + " is not set"
		}
		code := rbee.Code("")
		if errors.As(err, &e) {
			code = e.Code
		}
		return withHint(fmt.Errorf("authentication failed at %s (address from %s): %s: %w (%s)", q.url, q.from, why, err, code),
			"set $"+envAPIKey+" to the queen's token (or check --queen-url / $"+envQueenURL+"; configuration: "+q.file.Describe(q.cenv)+")")
	case errors.As(err, &e):
		return withHint(err, e.Hint())
	}
	return withHint(fmt.Errorf("no queen answers at %s: %s", q.url, rootCause(err)),
		"start one with 'rbee queen', or point --queen-url / $"+envQueenURL+" at a running one")
}

// rootCause keeps the innermost message of a network error ("connection
// refused"), not the whole chain of wrappers.
func rootCause(err error) string {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			break
		}
		err = u
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return msg
}

// isLoopback reports whether the queen's address is on this machine, where
// rbee infer may start one.
func (q *queen) isLoopback() bool {
	switch q.url.Hostname() {
	case "127.0.0.1", "localhost", "::1":
		return true
	}
	return false
}
