package sshx

import (
	"errors"
	"fmt"
	"strings"
)

// ErrBadArgv reports an argv that cannot be run: empty, a NUL byte in a
// word, or a program name that a shell would read as an option.
var ErrBadArgv = errors.New("sshx: bad argv")

// Quote returns s as one POSIX shell word that the shell reads back as
// exactly s: unchanged if it is made only of characters no shell treats
// specially, otherwise inside single quotes, where only the single quote
// itself needs care: it closes the quotes, adds a backslash-escaped
// quote and reopens them. The empty string becomes a pair of quotes.
//
// A NUL byte cannot travel in a shell word at all; [Join] and the [Client]
// methods refuse words that hold one.
func Quote(s string) string {
	if s == "" {
		return "''"
	}
	if isPlain(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// isPlain reports whether every byte of s is one that no POSIX shell
// expands, splits or otherwise interprets ('=' is left out so that a word
// is never read as a variable assignment, '~' for tilde expansion).
func isPlain(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("_-./:@%+,", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// Join builds a shell command line that runs argv: argv[0] always in
// single quotes (so it can never be a reserved word, an alias or a
// variable assignment), every other word through [Quote]. It fails with
// [ErrBadArgv] for an empty argv, a word holding a NUL byte, or an
// argv[0] that is empty or starts with '-'.
func Join(argv []string) (string, error) {
	if err := checkArgv(argv); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("'" + strings.ReplaceAll(argv[0], "'", `'\''`) + "'")
	for _, a := range argv[1:] {
		b.WriteByte(' ')
		b.WriteString(Quote(a))
	}
	return b.String(), nil
}

func checkArgv(argv []string) error {
	if len(argv) == 0 {
		return fmt.Errorf("%w: no program", ErrBadArgv)
	}
	if argv[0] == "" || argv[0][0] == '-' {
		return fmt.Errorf("%w: program name %q", ErrBadArgv, argv[0])
	}
	for i, a := range argv {
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("%w: argument %d holds a NUL byte", ErrBadArgv, i)
		}
	}
	return nil
}

// quotePath quotes a path for use as a command's operand; a path that
// starts with '-' gets a "./" so that no command reads it as an option.
func quotePath(p string) string {
	if strings.HasPrefix(p, "-") {
		p = "./" + p
	}
	return Quote(p)
}

// checkWord refuses a single word (a path, an environment value) that
// cannot travel through a shell.
func checkWord(what, s string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%w: %s holds a NUL byte", ErrBadArgv, what)
	}
	return nil
}

// envName reports whether name is a portable environment variable name.
func envName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
