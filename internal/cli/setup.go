package cli

import (
	"context"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"rbee/api"
	"rbee/internal/cliutil"
)

func setupVerbs() []subcommand {
	return []subcommand{
		{name: "list-nodes", args: "[--json]", summary: "list the nodes in the queen's registry", run: runSetupListNodes},
		{name: "remove-node", args: "--name NAME", summary: "remove a node from the registry", run: runSetupRemoveNode},
	}
}

// runSetup is rbee setup list-nodes | remove-node. (add-node and install
// come with remote nodes.)
func runSetup(ctx context.Context, env *Env, args []string) error {
	if len(args) > 0 && (args[0] == "add-node" || args[0] == "install") {
		return fmt.Errorf("%s is not available in this version: only the local node (--node local) can run inferences yet", args[0])
	}
	return runSubcommand(ctx, env, "setup", setupVerbs(), args)
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
	fmt.Fprintln(tw, "NODE (HOST)\tSTATUS\tLAST CONNECTED\tINSTALL PATH\tHIVE PORT")
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
		fmt.Fprintf(tw, "%s (%s)\t%s\t%s\t%s\t%d\n", n.Name, host, orDash(n.Status), last, orDash(n.InstallPath), n.HivePort)
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
