package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"rbee/internal/config"
)

// EnvInstallRoot moves the system-wide paths of `rbee install --system`
// under another root (like DESTDIR): tests point it at a temporary
// directory, packagers at a staging tree. Unset, the root is "/".
const EnvInstallRoot = "RBEE_INSTALL_ROOT"

// Modes of what rbee install writes. The data directory holds logs and
// the run directory of the daemons, so only its owner may enter it (the
// daemons create it 0700 too).
const (
	binaryMode    fs.FileMode = 0o755
	configMode    fs.FileMode = 0o644
	configDirMode fs.FileMode = 0o755
	dataDirMode   fs.FileMode = 0o700
	parentDirMode fs.FileMode = 0o755
)

// installLayout is where rbee install puts things.
type installLayout struct {
	system    bool
	binDir    string // holds the rbee binary
	configDir string // holds config.toml
	dataDir   string // [paths] home: registry, catalog, logs
	// homeValue is what the config file says for [paths] home.
	homeValue string
	// userHome is $HOME, for "~" in messages and the shadowing note.
	userHome string
}

func (l installLayout) configFile() string { return filepath.Join(l.configDir, "config.toml") }
func (l installLayout) modelsDir() string  { return filepath.Join(l.dataDir, "models") }

// layoutFor works out the paths of a user (~/.local/bin, ~/.config/rbee,
// ~/.local/share/rbee) or system (/usr/local/bin, /etc/rbee, /var/lib/rbee)
// install. $HOME and $RBEE_INSTALL_ROOT are taken from env.
func layoutFor(env *Env, system bool) (installLayout, error) {
	home := env.Getenv("HOME")
	if home == "" {
		home, _ = os.UserHomeDir()
	}
	if home != "" && !filepath.IsAbs(home) {
		home = ""
	}
	l := installLayout{system: system}
	if home != "" {
		l.userHome = filepath.Clean(home)
	}
	if !system {
		if l.userHome == "" {
			return l, withHint(errors.New("no home directory to install into ($HOME is unset or not absolute)"),
				"set $HOME, or install for every user with --system")
		}
		l.binDir = filepath.Join(l.userHome, ".local", "bin")
		l.configDir = filepath.Join(l.userHome, ".config", "rbee")
		l.dataDir = filepath.Join(l.userHome, ".local", "share", "rbee")
		// "~/" keeps the file short and right if the home moves.
		l.homeValue = "~/.local/share/rbee"
		return l, nil
	}
	root := env.Getenv(EnvInstallRoot)
	if root == "" {
		root = "/"
	}
	if !filepath.IsAbs(root) {
		return l, fmt.Errorf("$%s %q is not an absolute path", EnvInstallRoot, root)
	}
	root = filepath.Clean(root)
	l.binDir = filepath.Join(root, "usr", "local", "bin")
	l.configDir = filepath.Join(root, "etc", "rbee")
	l.dataDir = filepath.Join(root, "var", "lib", "rbee")
	l.homeValue = l.dataDir
	return l, nil
}

// runInstall is rbee install [--system] [--force]: the running
// binary into a bin directory, the configuration and data directories, and
// a default configuration file, saying what it did line by line.
func runInstall(ctx context.Context, env *Env, args []string) error {
	flags := newFlags(env, "install")
	system := flags.Bool("system", false, "install for every user: /usr/local/bin, /etc/rbee, /var/lib/rbee (needs root)")
	force := flags.Bool("force", false, "replace an existing configuration file (the old one is kept as config.toml.bak)")
	if err := parseFlags(env, flags, args); err != nil {
		return err
	}
	l, err := layoutFor(env, *system)
	if err != nil {
		return err
	}
	in := &installer{env: env, out: env.Stdout, l: l, force: *force}
	if err := in.run(ctx); err != nil {
		return in.explain(err)
	}
	return nil
}

// installer carries out one rbee install.
type installer struct {
	env   *Env
	out   io.Writer
	l     installLayout
	force bool
}

func (in *installer) say(format string, a ...any) { fmt.Fprintf(in.out, format+"\n", a...) }

func (in *installer) run(ctx context.Context) error {
	src, err := in.source()
	if err != nil {
		return err
	}
	steps := []func() error{
		func() error { return in.mkdir(in.l.binDir, parentDirMode) },
		func() error { return in.installBinary(src) },
		func() error { return in.mkdir(in.l.configDir, configDirMode) },
		in.writeConfig,
		func() error { return in.mkdir(in.l.dataDir, dataDirMode) },
		func() error { return in.mkdir(in.l.modelsDir(), dataDirMode) },
	}
	for _, step := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := step(); err != nil {
			return err
		}
	}
	in.notes()
	in.say("Done. Run '%s help' to see the commands.", filepath.Join(in.l.binDir, "rbee"))
	return nil
}

// source is the running rbee binary, symbolic links resolved.
func (in *installer) source() (string, error) {
	if in.env.Executable == "" {
		return "", errors.New("cannot tell where the running rbee binary is")
	}
	src, err := filepath.EvalSymlinks(in.env.Executable)
	if err != nil {
		return "", fmt.Errorf("finding the running rbee binary: %w", err)
	}
	return src, nil
}

// mkdir creates dir (and missing parents, 0755) with mode, and says so;
// an existing directory is left as it is.
func (in *installer) mkdir(dir string, mode fs.FileMode) error {
	st, err := os.Stat(dir)
	switch {
	case err == nil && st.IsDir():
		in.say("Directory %s exists", dir)
		return nil
	case err == nil:
		return fmt.Errorf("%s exists and is not a directory", dir)
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dir), parentDirMode); err != nil {
		return err
	}
	if err := os.Mkdir(dir, mode); err != nil {
		return err
	}
	// The umask may have taken bits away: the mode is what we say it is.
	if err := os.Chmod(dir, mode); err != nil {
		return err
	}
	in.say("Created directory %s (mode %04o)", dir, mode)
	return nil
}

// installBinary copies src to <bin>/rbee with mode 0755, through a
// temporary file renamed into place (a running rbee there keeps its old
// file). An identical binary is left alone.
func (in *installer) installBinary(src string) error {
	dst := filepath.Join(in.l.binDir, "rbee")
	if same, err := sameFile(src, dst); err != nil {
		return err
	} else if same {
		in.say("%s is the running rbee %s: nothing to copy", dst, Version)
		return nil
	}
	existed := false
	if st, err := os.Lstat(dst); err == nil {
		existed = true
		if st.Mode().IsRegular() {
			equal, err := sameContents(src, dst)
			if err != nil {
				return err
			}
			if equal {
				if st.Mode().Perm() != binaryMode {
					if err := os.Chmod(dst, binaryMode); err != nil {
						return err
					}
				}
				in.say("%s is already this rbee %s (mode %04o)", dst, Version, binaryMode)
				return nil
			}
		}
	}
	n, err := copyInto(src, dst, binaryMode)
	if err != nil {
		return err
	}
	if existed {
		in.say("Replaced %s with rbee %s (%s, mode %04o)", dst, Version, formatBytes(n), binaryMode)
	} else {
		in.say("Installed rbee %s to %s (%s, mode %04o)", Version, dst, formatBytes(n), binaryMode)
	}
	return nil
}

// writeConfig writes the default configuration file unless one exists
// (--force replaces it, keeping the old one as config.toml.bak).
func (in *installer) writeConfig() error {
	path := in.l.configFile()
	data := []byte(defaultConfig(in.l))
	cenv := config.Env{Getenv: in.env.Getenv, UserHome: in.l.userHome}
	// What we write must be a file rbee reads: check it as rbee will.
	if _, err := config.Parse(path, data, cenv); err != nil {
		return fmt.Errorf("the default configuration does not parse (a bug): %w", err)
	}
	st, err := os.Lstat(path)
	switch {
	case err == nil && st.Mode().IsRegular() && st.Size() == int64(len(data)) && fileEquals(path, data):
		if err := os.Chmod(path, configMode); err != nil {
			return err
		}
		in.say("Configuration %s is already the default (mode %04o)", path, configMode)
	case err == nil && !in.force:
		in.say("Kept the existing configuration %s (rbee install --force replaces it)", path)
		if _, perr := config.Read(path, cenv); perr != nil {
			in.say("warning: %s", oneLine(perr.Error()))
		}
	case err == nil:
		backup := path + ".bak"
		if err := os.Rename(path, backup); err != nil {
			return err
		}
		if err := writeFileAtomic(path, data, configMode); err != nil {
			return err
		}
		in.say("Replaced the configuration %s with the default (mode %04o); the old one is %s", path, configMode, backup)
	case errors.Is(err, fs.ErrNotExist):
		if err := writeFileAtomic(path, data, configMode); err != nil {
			return err
		}
		in.say("Wrote the configuration %s (mode %04o) with [paths] home = %s", path, configMode, in.l.dataDir)
	default:
		return err
	}
	return nil
}

// notes says what may surprise: the bin directory missing from $PATH, and
// settings that the new configuration file will not decide.
func (in *installer) notes() {
	pathEnv := in.env.Getenv("PATH")
	dst := filepath.Join(in.l.binDir, "rbee")
	if first := firstOnPath("rbee", pathEnv); first != "" && onPath(in.l.binDir, pathEnv) {
		if same, err := sameFile(dst, first); err == nil && !same {
			in.say("note: %s comes first on your PATH; run %s, or remove the other", first, dst)
		}
	}
	if !onPath(in.l.binDir, pathEnv) {
		in.say("hint: %s is not on your PATH; add it, for example:", in.l.binDir)
		dir := in.l.binDir
		if !in.l.system && in.l.userHome != "" {
			dir = "$HOME/.local/bin"
		}
		in.say("  echo 'export PATH=\"%s:$PATH\"' >> ~/.profile", dir)
	}
	cenv := config.Env{Getenv: in.env.Getenv, UserHome: in.l.userHome}
	if p, err := config.Find(cenv); err == nil && p != "" && p != in.l.configFile() {
		in.say("note: rbee reads %s first; %s applies only without it", p, in.l.configFile())
	}
	if in.l.system {
		in.say("note: %s is private to its owner (mode %04o); other users keep their state elsewhere with $%s or their own rbee install",
			in.l.dataDir, dataDirMode, config.EnvHome)
	}
	if h := in.env.Getenv(config.EnvHome); h != "" {
		in.say("note: $%s=%s overrides [paths] home while it is set", config.EnvHome, h)
	}
}

// explain adds advice to a failure: permissions mostly.
func (in *installer) explain(err error) error {
	if !errors.Is(err, fs.ErrPermission) {
		return err
	}
	if in.l.system {
		return withHint(err, "a system install needs root: sudo rbee install --system (or install for yourself without --system)")
	}
	return withHint(err, "check the ownership and modes of the directories under "+in.l.userHome)
}

// defaultConfig is the commented configuration file rbee install writes:
// every setting at its default (commented out) but [paths] home.
func defaultConfig(l installLayout) string {
	var b strings.Builder
	b.WriteString(`# rbee configuration, written by rbee install.
#
# rbee reads the first of $RBEE_CONFIG, ~/.config/rbee/config.toml and
# /etc/rbee/config.toml that exists. Command-line flags beat environment
# variables, which beat this file, which beats the defaults shown in the
# comments below. Unknown keys are an error.

[queen]
# url = "http://127.0.0.1:8080"     # where rbee infer & co find the queen
# host = "127.0.0.1"                # where rbee queen listens (other addresses need an API key)
# port = 8080
# local_hive_port = 9200            # the hive of this machine
# local_worker_port_start = 8001    # the first port it tries for workers
# max_queue = 256                   # tasks that may wait for a free slot (0 = no queue)
# queue_timeout = "5m"              # how long a task may wait for one
# max_workers_per_model = 1         # workers of one model per node and device (more: started while tasks wait)

[paths]
# State: node registry, model catalog, models/, logs/ ($RBEE_HOME overrides it).
home = `)
	b.WriteString(tomlString(l.homeValue))
	b.WriteString(`

[ssh]
# known_hosts = "~/.ssh/known_hosts"  # host keys of remote nodes

[remote]
# Where rbee lives on remote nodes: absolute, or relative to a node's install path.
# binary_path = "bin/rbee"
# git_repo_dir = "src"              # where rbee setup install builds from source
# worker_port_start = 8001

[hive]
# idle_timeout = "5m"               # stop a local worker idle for this long

[security]
# Which requests the daemons answer, so that web pages cannot drive them.
# Host names besides IP addresses, localhost and the daemon's own name:
# allowed_hosts = []                # e.g. ["gpu-box.example.com", "*.lan"]
# Web origins whose pages may call the API (none but the daemon's own by default):
# allowed_origins = []              # e.g. ["http://localhost:3000"]

[ui]
# enabled = true                    # the queen's web console at / (false turns it off)
`)
	return b.String()
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "\\u%04X", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// onPath tells whether dir is one of the directories of a $PATH value.
func onPath(dir, pathEnv string) bool {
	dir = filepath.Clean(dir)
	for _, p := range filepath.SplitList(pathEnv) {
		if p != "" && filepath.Clean(p) == dir {
			return true
		}
	}
	return false
}

// fileEquals tells whether the file at path holds exactly data.
func fileEquals(path string, data []byte) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	got, err := readAllLimited(f, int64(len(data)))
	return err == nil && bytes.Equal(got, data)
}

// firstOnPath returns the first executable file called name in the
// directories of a $PATH value, or "".
func firstOnPath(name, pathEnv string) string {
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// sameFile tells whether a and b are the same file (b may not exist).
func sameFile(a, b string) (bool, error) {
	sa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	sb, err := os.Stat(b)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return os.SameFile(sa, sb), nil
}

// sameContents compares two files byte for byte.
func sameContents(a, b string) (bool, error) {
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	sa, err := fa.Stat()
	if err != nil {
		return false, err
	}
	sb, err := fb.Stat()
	if err != nil {
		return false, err
	}
	if sa.Size() != sb.Size() {
		return false, nil
	}
	bufA, bufB := make([]byte, 1<<16), make([]byte, 1<<16)
	for {
		na, errA := io.ReadFull(fa, bufA)
		nb, errB := io.ReadFull(fb, bufB)
		if na != nb || !bytes.Equal(bufA[:na], bufB[:nb]) {
			return false, nil
		}
		if errA == io.EOF || errA == io.ErrUnexpectedEOF {
			return errB == io.EOF || errB == io.ErrUnexpectedEOF, nil
		}
		if errA != nil {
			return false, errA
		}
		if errB != nil {
			return false, errB
		}
	}
}

// copyInto copies src to dst with mode through a temporary file in dst's
// directory, synced and renamed into place; it returns the bytes copied.
func copyInto(src, dst string, mode fs.FileMode) (int64, error) {
	f, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return 0, err
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	n, err := io.Copy(tmp, f)
	if err != nil {
		return 0, err
	}
	if err := tmp.Chmod(mode); err != nil {
		return 0, err
	}
	if err := tmp.Sync(); err != nil {
		return 0, err
	}
	if err := tmp.Close(); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return 0, err
	}
	done = true
	return n, nil
}

// writeFileAtomic writes data to path with mode through a temporary file
// renamed into place.
func writeFileAtomic(path string, data []byte, mode fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	if _, err = tmp.Write(data); err == nil {
		if err = tmp.Chmod(mode); err == nil {
			if err = tmp.Sync(); err == nil {
				err = tmp.Close()
			}
		}
	}
	if err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}
