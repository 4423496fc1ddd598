package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"runtime"
	"strings"
	"time"

	"rbee/api"
	"rbee/sshx"
)

// installer puts rbee on a node over SSH. When the node's platform
// (uname -sm) is the queen's and the request does not ask for a build, the
// queen's own binary (Config.Binary) is uploaded; otherwise the node's
// git_repo_url is cloned (or fetched) into the git repo dir, the branch
// checked out, and `go build -o <binary_path> ./cmd/rbee` run there.
// Either way the installed binary must then answer `version` with this
// queen's major.minor.
type installer struct {
	q          *Queen
	n          api.Node
	fromSource bool
	say        func(action, format string, a ...any)

	c *sshx.Client
}

func (in *installer) run(ctx context.Context) error {
	n := in.n
	rm := in.q.hives.remote
	bin := rm.binaryPath(n)

	in.say("install_connect", "Connecting to %s over SSH (%s@%s:%d)", n.Name, n.SSHUser, n.SSHHost, n.SSHPort)
	c, err := rm.conn(ctx, n)
	if err != nil {
		in.q.hives.record(ctx, hiveTarget{node: n.Name, row: &n}, api.NodeUnreachable, err.Error())
		return err
	}
	in.c = c

	in.say("install_platform", "Checking the platform of %s (uname -sm)", n.Name)
	plat, err := c.Uname(ctx)
	if err != nil {
		return remoteFailure(n.Name, "uname -sm", err)
	}
	local := sshx.Platform{OS: runtime.GOOS, Arch: runtime.GOARCH}
	in.say("install_platform", "%s runs %s; this queen runs %s", n.Name, plat, local)

	dirs := []string{path.Dir(bin), path.Join(n.InstallPath, "logs"), hiveHome(n)}
	in.say("install_dirs", "Creating %s on %s", strings.Join(dirs, ", "), n.Name)
	if err := in.runStep(ctx, "mkdir", sshx.Cmd{Argv: append([]string{"mkdir", "-p", "--"}, dirs...)}); err != nil {
		return err
	}

	switch {
	case plat == local && !in.fromSource:
		if err := in.upload(ctx, bin); err != nil {
			return err
		}
	case n.GitRepoURL == "":
		why := fmt.Sprintf("%s runs %s, not %s like this queen", n.Name, plat, local)
		if in.fromSource {
			why = "a build from source was asked for"
		}
		return api.Errorf(api.CodeInvalidRequest, "cannot install rbee on %s: %s, and the node has no git_repo_url to build from", n.Name, why).
			With("node", n.Name).With("step", "build").
			WithHint(fmt.Sprintf("remove the node and add it again with --git-repo URL (rbee setup remove-node --name %s)", n.Name))
	default:
		if err := in.build(ctx, bin); err != nil {
			return err
		}
	}

	in.say("install_verify", "Checking the installed binary: %s version", bin)
	var out strings.Builder
	if err := in.runStep(ctx, "verify", sshx.Cmd{Argv: []string{bin, "version"}, Stdout: &out}); err != nil {
		return err
	}
	version := strings.TrimPrefix(strings.TrimSpace(out.String()), "rbee ")
	if verr := checkVersion(n.Name, version); verr != nil {
		return verr.With("step", "verify").With("binary", bin)
	}
	if err := in.q.store.SetStatus(context.WithoutCancel(ctx), n.Name, api.NodeReachable, time.Now(), ""); err != nil {
		in.q.log.Warn("recording node status", "node", n.Name, "error", err)
	}
	in.say("install_done", "rbee %s is installed on %s at %s", version, n.Name, bin)
	return nil
}

// runStep runs one command; a failure names the step and its output.
func (in *installer) runStep(ctx context.Context, step string, cmd sshx.Cmd) error {
	if err := in.c.Run(ctx, cmd); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return remoteFailure(in.n.Name, step, err)
	}
	return nil
}

// upload copies the queen's binary to the node.
func (in *installer) upload(ctx context.Context, bin string) error {
	src := in.q.cfg.Binary
	st, err := os.Stat(src)
	if err != nil {
		return api.Errorf(api.CodeInternal, "cannot upload rbee to %s: %v", in.n.Name, err).With("node", in.n.Name).With("step", "upload")
	}
	in.say("install_upload", "Uploading rbee (%.1f MiB) to %s:%s", float64(st.Size())/(1<<20), in.n.Name, bin)
	if err := in.c.UploadFile(ctx, src, bin, 0o755); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return remoteFailure(in.n.Name, "upload", err)
	}
	return nil
}

// goScript runs the first go it finds: on the PATH (which a
// non-interactive SSH session keeps short), then where Go's installers put
// it. "$@" are go's arguments.
const goScript = `for g in "$(command -v go 2>/dev/null)" /usr/local/go/bin/go /usr/lib/go/bin/go /usr/local/bin/go /opt/homebrew/bin/go "$HOME/go/bin/go" "$HOME/sdk/go/bin/go"; do
  if [ -n "$g" ] && [ -x "$g" ]; then exec "$g" "$@"; fi
done
echo "go: not found on this node (looked on the PATH and in /usr/local/go/bin); install Go to build rbee" >&2
exit 127`

func goCmd(dir string, args ...string) sshx.Cmd {
	return sshx.Cmd{Argv: append([]string{"sh", "-c", goScript, "go"}, args...), Dir: dir,
		Env: map[string]string{"CGO_ENABLED": "0"}}
}

// build clones or updates the sources, checks out the branch and builds.
func (in *installer) build(ctx context.Context, bin string) error {
	n := in.n
	repo := in.q.hives.remote.gitRepoDir(n)

	in.say("install_tools", "Checking for git and go on %s", n.Name)
	var gitV, goV strings.Builder
	if err := in.runStep(ctx, "git --version", sshx.Cmd{Argv: []string{"git", "--version"}, Stdout: &gitV}); err != nil {
		return err
	}
	if err := in.runStep(ctx, "go version", withStdout(goCmd("", "version"), &goV)); err != nil {
		return err
	}
	in.say("install_tools", "%s has %s and %s", n.Name, strings.TrimSpace(gitV.String()), strings.TrimSpace(goV.String()))

	err := in.c.Run(ctx, sshx.Cmd{Argv: []string{"test", "-d", path.Join(repo, ".git")}})
	var xe *sshx.ExitError
	switch {
	case err == nil:
		in.say("install_fetch", "Fetching branch %s of %s into %s", n.GitBranch, n.GitRepoURL, repo)
		if err := in.runStep(ctx, "git remote set-url", sshx.Cmd{Argv: []string{"git", "-C", repo, "remote", "set-url", "origin", n.GitRepoURL}}); err != nil {
			return err
		}
		if err := in.runStep(ctx, "git fetch", sshx.Cmd{Argv: []string{"git", "-C", repo, "fetch", "--quiet", "origin", n.GitBranch}}); err != nil {
			return err
		}
		in.say("install_checkout", "Checking out branch %s", n.GitBranch)
		if err := in.runStep(ctx, "git checkout", sshx.Cmd{Argv: []string{"git", "-C", repo, "checkout", "--quiet", "--force", "-B", n.GitBranch, "FETCH_HEAD"}}); err != nil {
			return err
		}
	case errors.As(err, &xe):
		in.say("install_clone", "Cloning %s (branch %s) into %s", n.GitRepoURL, n.GitBranch, repo)
		if err := in.runStep(ctx, "git clone", sshx.Cmd{Argv: []string{"git", "clone", "--quiet", "--branch", n.GitBranch, "--", n.GitRepoURL, repo}}); err != nil {
			return err
		}
	default:
		return remoteFailure(n.Name, "looking for "+repo, err)
	}
	var head strings.Builder
	if err := in.runStep(ctx, "git rev-parse", sshx.Cmd{Argv: []string{"git", "-C", repo, "rev-parse", "--short", "HEAD"}, Stdout: &head}); err != nil {
		return err
	}
	in.say("install_build", "Building rbee at %s (%s) with go build; this can take a few minutes", n.GitBranch, strings.TrimSpace(head.String()))
	return in.runStep(ctx, "go build", goCmd(repo, "build", "-trimpath", "-o", bin, "./cmd/rbee"))
}

func withStdout(c sshx.Cmd, w *strings.Builder) sshx.Cmd {
	c.Stdout = w
	return c
}
