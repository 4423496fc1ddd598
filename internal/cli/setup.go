package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"rbee"
	"rbee/api"
	"rbee/internal/cliutil"
)

func setupVerbs() []subcommand {
	return []subcommand{
		{name: "add-node", args: "--name NAME --ssh-host HOST [--ssh-port 22] [--ssh-user USER] [--ssh-key PATH] [--git-repo URL] [--git-branch main] --install-path PATH [--hive-port 9200] [--tunnel] [--accept-new-host-key]",
			summary: "test a node's SSH connection and add it to the registry", run: runSetupAddNode},
		{name: "install", args: "--node NAME [--from-source]", summary: "install rbee on a registered node over SSH", run: runSetupInstall},
		{name: "list-nodes", args: "[--json]", summary: "list the nodes in the queen's registry", run: runSetupListNodes},
		{name: "remove-node", args: "--name NAME", summary: "remove a node from the registry", run: runSetupRemoveNode},
	}
}

// runSetup is rbee setup add-node | install | list-nodes | remove-node.
func runSetup(ctx context.Context, env *Env, args []string) error {
	return runSubcommand(ctx, env, "setup", setupVerbs(), args)
}

// addNodeFlags names the flag behind each field of an add-node request.
var addNodeFlags = map[string]string{
	"node_name": "name", "ssh_host": "ssh-host", "ssh_port": "ssh-port", "ssh_user": "ssh-user", "ssh_key_path": "ssh-key",
	"git_repo_url": "git-repo", "git_branch": "git-branch", "install_path": "install-path", "hive_port": "hive-port",
}

// runSetupAddNode is rbee setup add-node: the queen tests the
// node's SSH connection (echo) and saves it only if that worked. Its
// narration is printed as it comes.
func runSetupAddNode(ctx context.Context, env *Env, name string, args []string) error {
	fs := cliutil.NewFlagSet(name)
	qf := addQueenFlags(fs)
	var req rbee.AddNodeRequest
	fs.StringVar(&req.Name, "name", "", "the node's name: lowercase letters, digits and hyphens (required)")
	fs.StringVar(&req.SSHHost, "ssh-host", "", "the node's host name or IP address (required)")
	fs.IntVar(&req.SSHPort, "ssh-port", api.DefaultSSHPort, "the node's SSH port")
	fs.StringVar(&req.SSHUser, "ssh-user", "", "the user to log in as (default: the queen's user)")
	fs.StringVar(&req.SSHKeyPath, "ssh-key", "", "private key file on the queen's machine (default: ssh-agent and ~/.ssh/id_*)")
	fs.StringVar(&req.GitRepoURL, "git-repo", "", "git repository to build rbee from when the queen's binary cannot run on the node")
	fs.StringVar(&req.GitBranch, "git-branch", api.DefaultBranch, "branch of --git-repo to build")
	fs.StringVar(&req.InstallPath, "install-path", "", "where rbee lives on the node, e.g. /opt/rbee (required)")
	fs.IntVar(&req.HivePort, "hive-port", api.DefaultHivePort, "port of the node's hive")
	fs.BoolVar(&req.Tunnel, "tunnel", false, "reach the hive through the SSH connection instead of the network (for nodes whose hive port is not open)")
	fs.BoolVar(&req.AcceptNewHostKey, "accept-new-host-key", false, "accept the host key of a node that known_hosts does not list yet, and record it")
	u, s := verbUsage(setupVerbs(), name)
	if err := cliutil.Parse(fs, args, env.Stdout, u, s); err != nil {
		return err
	}
	for _, f := range []struct{ v, flag string }{{req.Name, "name"}, {req.SSHHost, "ssh-host"}, {req.InstallPath, "install-path"}} {
		if f.v == "" {
			return usagef("--%s is required", f.flag)
		}
	}
	if req.SSHPort < 1 || req.SSHPort > 65535 {
		return usagef("--ssh-port: a port is between 1 and 65535")
	}
	if req.HivePort < 1 || req.HivePort > 65535 {
		return usagef("--hive-port: a port is between 1 and 65535")
	}
	if req.SSHKeyPath != "" && !filepath.IsAbs(req.SSHKeyPath) {
		abs, err := filepath.Abs(req.SSHKeyPath)
		if err != nil {
			return usagef("--ssh-key: %v", err)
		}
		req.SSHKeyPath = abs
	}
	if e := req.Validate(); e != nil {
		field, _ := e.Details["field"].(string)
		msg, _ := strings.CutPrefix(e.Message, "invalid "+field+": ")
		if f, ok := addNodeFlags[field]; ok {
			return usagef("--%s: %s", f, msg)
		}
		return usagef("%s", e.Message)
	}
	q, err := qf.client(env)
	if err != nil {
		return err
	}
	if err := printNodeStream(env, q.AddNode(ctx, req)); err != nil {
		return q.explain(err)
	}
	fmt.Fprintf(env.Stdout, "Node %s added. Install rbee on it with: rbee setup install --node %s\n", req.Name, req.Name)
	return nil
}

// runSetupInstall is rbee setup install: the queen installs rbee on
// the node over SSH, narrating each step.
func runSetupInstall(ctx context.Context, env *Env, name string, args []string) error {
	fs := cliutil.NewFlagSet(name)
	qf := addQueenFlags(fs)
	var req rbee.InstallRequest
	fs.StringVar(&req.Name, "node", "", "the registered node to install rbee on (required)")
	fs.BoolVar(&req.FromSource, "from-source", false, "build rbee on the node from its git repository even if this binary would run there")
	u, s := verbUsage(setupVerbs(), name)
	if err := cliutil.Parse(fs, args, env.Stdout, u, s); err != nil {
		return err
	}
	if req.Name == "" {
		return usagef("--node is required")
	}
	if err := api.ValidateNodeName(req.Name); err != nil {
		return usagef("--node: %s", strings.TrimPrefix(err.Message, "invalid node: "))
	}
	q, err := qf.client(env)
	if err != nil {
		return err
	}
	if err := printNodeStream(env, q.InstallNode(ctx, req)); err != nil {
		return q.explain(err)
	}
	return nil
}

// printNodeStream prints the queen's narration lines as they come.
func printNodeStream(env *Env, events func(yield func(rbee.Event, error) bool)) error {
	for ev, err := range events {
		if err != nil {
			return err
		}
		if ev.Kind == rbee.KindNarration {
			fmt.Fprintf(env.Stdout, "[%s] %s\n", actorName(ev.Narration.Actor), ev.Narration.Human)
		}
	}
	return nil
}

func runSetupListNodes(ctx context.Context, env *Env, name string, args []string) error {
	fs := cliutil.NewFlagSet(name)
	qf := addQueenFlags(fs)
	asJSON := fs.Bool("json", false, "print the list as JSON")
	u, s := verbUsage(setupVerbs(), name)
	if err := cliutil.Parse(fs, args, env.Stdout, u, s); err != nil {
		return err
	}
	q, err := qf.client(env)
	if err != nil {
		return err
	}
	nodes, err := q.Nodes(ctx)
	if err != nil {
		return q.explain(err)
	}
	if *asJSON {
		return printJSON(env.Stdout, api.NodeList{Nodes: nodes})
	}
	if len(nodes) == 0 {
		fmt.Fprintln(env.Stdout, "No nodes registered. The local node (--node local) needs no registration.")
		return nil
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE (HOST)\tSTATUS\tLAST CONNECTED\tINSTALL PATH\tHIVE PORT\tTUNNEL")
	now := time.Now()
	for _, n := range nodes {
		host := n.SSHHost
		if n.SSHUser != "" {
			host = n.SSHUser + "@" + host
		}
		if n.SSHPort != 0 && n.SSHPort != 22 {
			host += ":" + strconv.Itoa(n.SSHPort)
		}
		last := "never"
		if n.LastConnectedUnix > 0 {
			last = ago(now, time.Unix(n.LastConnectedUnix, 0))
		}
		tunnel := "no"
		if n.Tunnel {
			tunnel = "yes"
		}
		fmt.Fprintf(tw, "%s (%s)\t%s\t%s\t%s\t%d\t%s\n", n.Name, host, orDash(string(n.Status)), last, orDash(n.InstallPath), n.HivePort, tunnel)
	}
	return tw.Flush()
}

func runSetupRemoveNode(ctx context.Context, env *Env, name string, args []string) error {
	fs := cliutil.NewFlagSet(name)
	qf := addQueenFlags(fs)
	node := fs.String("name", "", "the node to remove (required)")
	u, s := verbUsage(setupVerbs(), name)
	if err := cliutil.Parse(fs, args, env.Stdout, u, s); err != nil {
		return err
	}
	if *node == "" {
		return usagef("--name is required")
	}
	if err := api.ValidateNodeName(*node); err != nil {
		return usagef("--name: %s", err.Message)
	}
	q, err := qf.client(env)
	if err != nil {
		return err
	}
	if err := q.RemoveNode(ctx, *node); err != nil {
		return q.explain(err)
	}
	fmt.Fprintf(env.Stdout, "Removed node %s.\n", *node)
	return nil
}
