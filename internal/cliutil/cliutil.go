// Package cliutil holds what the rbee command and the daemons' Main functions
// share for their command lines: usage errors (exit code 2) and flag parsing
// that reports them.
package cliutil

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// UsageError is a mistake on the command line: the command exits with code 2.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Usagef makes a UsageError.
func Usagef(format string, a ...any) error { return &UsageError{fmt.Sprintf(format, a...)} }

// ErrHelp is returned when the user asked for --help and the flags were printed.
var ErrHelp = errors.New("help requested")

// NewFlagSet makes a flag set that stays silent on errors (Parse reports them).
func NewFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// Parse parses args. --help prints the usage line, summary and flags to out
// and returns ErrHelp; a bad flag or a stray argument is a UsageError.
func Parse(fs *flag.FlagSet, args []string, out io.Writer, usage, summary string) error {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(out, "usage: rbee %s %s\n  %s\n\nFlags:\n", fs.Name(), usage, summary)
		fs.SetOutput(out)
		fs.PrintDefaults()
		return ErrHelp
	}
	if err != nil {
		return Usagef("%s", strings.TrimPrefix(err.Error(), "flag: "))
	}
	if fs.NArg() > 0 {
		return Usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}
