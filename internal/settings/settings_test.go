package settings

import (
	"bytes"
	"errors"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/internal/cliutil"
)

type daemon struct {
	port  int
	name  string
	debug string
}

var table = Table[daemon]{
	{Flag: "port", Env: "D_PORT", Key: "d.port", Default: "80", Usage: "`port` to listen on",
		Set: func(d *daemon, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return errors.New("not a port")
			}
			d.port = n
			return nil
		}},
	{Env: "D_NAME", Key: "d.name", Usage: "the name", Set: func(d *daemon, v string) error { d.name = v; return nil }},
	{Flag: "debug", Hidden: true, Usage: "a test knob", Set: func(d *daemon, v string) error { d.debug = v; return nil }},
}

func parse(t *testing.T, args []string, env, file map[string]string) (daemon, map[int]Origin, error) {
	t.Helper()
	var d daemon
	o, err := table.Parse(&d, "d", args, &bytes.Buffer{}, "[flags]", "a daemon", Sources{
		Getenv: func(k string) string { return env[k] },
		File: func() (FileLookup, error) {
			return func(k string) (string, string, bool) { v, ok := file[k]; return v, k + " in test.toml", ok }, nil
		},
	})
	return d, o, err
}

func TestPrecedence(t *testing.T) {
	d, o, err := parse(t, nil, nil, nil)
	require.NoError(t, err)
	assert.Equal(t, daemon{port: 80}, d)
	assert.Equal(t, map[int]Origin{0: FromDefault}, o, "unset entries without a default are not set")

	file := map[string]string{"d.port": "81", "d.name": "file"}
	d, o, err = parse(t, nil, nil, file)
	require.NoError(t, err)
	assert.Equal(t, daemon{port: 81, name: "file"}, d)
	assert.Equal(t, FromFile, o[0])

	env := map[string]string{"D_PORT": "82", "D_NAME": ""}
	d, o, err = parse(t, nil, env, file)
	require.NoError(t, err)
	assert.Equal(t, daemon{port: 82, name: "file"}, d, "an empty variable is unset")
	assert.Equal(t, FromEnv, o[0])

	d, o, err = parse(t, []string{"--port=83", "-debug", "x"}, env, file)
	require.NoError(t, err)
	assert.Equal(t, daemon{port: 83, name: "file", debug: "x"}, d)
	assert.Equal(t, FromFlag, o[0])
}

func TestErrorsAndHelp(t *testing.T) {
	var ue *cliutil.UsageError
	_, _, err := parse(t, []string{"--port", "x"}, nil, nil)
	require.ErrorAs(t, err, &ue)
	assert.Contains(t, err.Error(), "--port")
	_, _, err = parse(t, []string{"--nope"}, nil, nil)
	require.ErrorAs(t, err, &ue)
	_, _, err = parse(t, []string{"stray"}, nil, nil)
	require.ErrorAs(t, err, &ue)

	_, _, err = parse(t, nil, map[string]string{"D_PORT": "-1"}, nil)
	require.Error(t, err)
	assert.False(t, errors.As(err, &ue), "a bad variable is no usage error")
	assert.Contains(t, err.Error(), "$D_PORT")
	_, _, err = parse(t, nil, nil, map[string]string{"d.port": "0"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "d.port in test.toml")

	var out bytes.Buffer
	var d daemon
	_, err = table.Parse(&d, "d", []string{"--help"}, &out, "[flags]", "a daemon", Sources{})
	require.ErrorIs(t, err, cliutil.ErrHelp)
	assert.Contains(t, out.String(), "-port port")
	assert.Contains(t, out.String(), "$D_PORT, config d.port")
	assert.Contains(t, out.String(), "(default 80)")
	assert.NotContains(t, out.String(), "debug")

	md := table.Markdown()
	assert.Contains(t, md, "| `--port` | `D_PORT` | `d.port` | `80` | port to listen on |")
	assert.Contains(t, md, "|  | `D_NAME` | `d.name` |  | the name |")
	assert.NotContains(t, md, "debug")
}
