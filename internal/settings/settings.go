// Package settings declares a daemon's settings once, as a table, and
// derives from it the command-line flags, the environment variables and the
// configuration file keys that set them, and their help text.
//
// Each [Entry] names where its value may come from — a flag, an
// environment variable, a key of the configuration file, any of them — its
// default, and a Set function that parses the value into the daemon's
// settings struct. [Table.Parse] resolves every entry with one precedence
// for all: a flag given on the command line beats a non-empty environment
// variable, which beats the configuration file, which beats the default.
// Set is called once per entry, with the winning value in text form
// (configuration file values are turned into the text a flag would take),
// so the parsing and the checks of a value live in one place whatever its
// source.
//
// Adding a setting is adding one entry.
package settings

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"rbee/internal/cliutil"
)

// Entry is one setting of a daemon whose settings struct is C.
type Entry[C any] struct {
	// Flag is the command-line flag without dashes ("port"); "" for none.
	Flag string
	// Env is the environment variable ("RBEE_HOME"); "" for none. An empty
	// variable counts as unset.
	Env string
	// Key is the configuration file key as "table.key" ("queen.port"); ""
	// for none. It must be one of config.KnownKeys.
	Key string
	// Default is the value when no source gives one, in the text form Set
	// parses; "" leaves the field as it is (its zero value, or what the
	// daemon applies later).
	Default string
	// Usage is the help text of the flag.
	Usage string
	// Example is a valid value other than the default, in the same text
	// form: the tests set it through each source to see the setting wired.
	Example string
	// Hidden keeps the flag out of --help (test knobs).
	Hidden bool
	// Set parses v into c. Its error should say what is wrong with the
	// value; Parse names the source in front of it.
	Set func(c *C, v string) error
}

// Table is a daemon's settings.
type Table[C any] []Entry[C]

// Sources are the places values come from besides the command line.
type Sources struct {
	// Getenv reads an environment variable.
	Getenv func(string) string
	// File loads the configuration file; it is called only once the
	// command line parsed (so --help works with a broken file). Nil means
	// no file.
	File func() (FileLookup, error)
}

// FileLookup returns the value of a configuration key in text form, and
// where it was read ("queen.port in /etc/rbee/config.toml"); ok is false
// when the file does not set it.
type FileLookup func(key string) (value, source string, ok bool)

// Origin says which source set a value.
type Origin int

// Origins, from weakest to strongest.
const (
	FromDefault Origin = iota
	FromFile
	FromEnv
	FromFlag
)

// textValue is a flag holding text; set records that the command line gave it.
type textValue struct {
	v   string
	set bool
}

func (t *textValue) String() string {
	if t == nil {
		return ""
	}
	return t.v
}

func (t *textValue) Set(v string) error { t.v, t.set = v, true; return nil }

// Parse reads args (the daemon's command line, without its name) and the
// sources into c, calling each entry's Set with the value that wins. name,
// usage and summary head the --help text (which goes to out, and then
// Parse returns cliutil.ErrHelp). Mistakes on the command line are
// *cliutil.UsageError; a bad value from the environment or the file is an
// error naming the variable or key. It returns, for each entry that got a
// value, where it came from, keyed by the entry's index.
func (t Table[C]) Parse(c *C, name string, args []string, out io.Writer, usage, summary string, src Sources) (map[int]Origin, error) {
	all, visible := cliutil.NewFlagSet(name), cliutil.NewFlagSet(name)
	values := make([]*textValue, len(t))
	for i, e := range t {
		values[i] = &textValue{v: e.Default}
		if e.Flag == "" {
			continue
		}
		all.Var(values[i], e.Flag, e.Usage)
		if !e.Hidden {
			visible.Var(&textValue{v: e.Default}, e.Flag, e.helpText())
		}
	}
	err := all.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return nil, cliutil.Parse(visible, []string{"--help"}, out, usage, summary)
	case err != nil:
		return nil, cliutil.Usagef("%s", strings.TrimPrefix(err.Error(), "flag: "))
	case all.NArg() > 0:
		return nil, cliutil.Usagef("unexpected argument %q", all.Arg(0))
	}
	lookup := FileLookup(func(string) (string, string, bool) { return "", "", false })
	if src.File != nil {
		if lookup, err = src.File(); err != nil {
			return nil, err
		}
	}
	getenv := src.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	origins := map[int]Origin{}
	for i, e := range t {
		v, from, origin := e.Default, "default", FromDefault
		switch {
		case values[i].set:
			v, from, origin = values[i].v, "--"+e.Flag, FromFlag
		case e.Env != "" && getenv(e.Env) != "":
			v, from, origin = getenv(e.Env), "$"+e.Env, FromEnv
		default:
			if e.Key == "" {
				break
			}
			if fv, fsrc, ok := lookup(e.Key); ok {
				v, from, origin = fv, fsrc, FromFile
			}
		}
		if origin == FromDefault && v == "" {
			continue
		}
		if err := e.Set(c, v); err != nil {
			if origin == FromFlag {
				return nil, cliutil.Usagef("%s %q: %v", from, v, err)
			}
			return nil, fmt.Errorf("%s %q: %w", from, v, err)
		}
		origins[i] = origin
	}
	return origins, nil
}

// helpText is the flag's usage with the other sources of its value.
func (e Entry[C]) helpText() string {
	var also []string
	if e.Env != "" {
		also = append(also, "$"+e.Env)
	}
	if e.Key != "" {
		also = append(also, "config "+e.Key)
	}
	if len(also) == 0 {
		return e.Usage
	}
	return e.Usage + " [" + strings.Join(also, ", ") + "]"
}

// Markdown renders the visible settings as a Markdown table: flag,
// environment variable, configuration key, default and meaning.
func (t Table[C]) Markdown() string {
	var b strings.Builder
	b.WriteString("| flag | environment | config file | default | meaning |\n|---|---|---|---|---|\n")
	code := func(s string) string {
		if s == "" {
			return ""
		}
		return "`" + s + "`"
	}
	for _, e := range t {
		if e.Hidden {
			continue
		}
		flagName := ""
		if e.Flag != "" {
			flagName = "--" + e.Flag
		}
		usage := strings.ReplaceAll(strings.ReplaceAll(e.Usage, "`", ""), "|", `\|`)
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", code(flagName), code(e.Env), code(e.Key), code(e.Default), usage)
	}
	return b.String()
}
