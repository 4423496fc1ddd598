package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"rbee"
	"rbee/api"
	"rbee/internal/cliutil"
)

// subcommand is one verb of a command with verbs (rbee workers list).
type subcommand struct {
	name, args, summary string
	run                 func(ctx context.Context, env *Env, name string, args []string) error
}

// runSubcommand dispatches args[0] among subs; a missing or unknown verb is
// a usage error, and "help" lists them.
func runSubcommand(ctx context.Context, env *Env, cmd string, subs []subcommand, args []string) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintf(env.Stdout, "usage: rbee %s VERB [flags]\n\nVerbs:\n", cmd)
		for _, s := range subs {
			fmt.Fprintf(env.Stdout, "  %-12s %s\n", s.name, s.summary)
		}
		if len(args) == 0 {
			var names []string
			for _, s := range subs {
				names = append(names, s.name)
			}
			return usagef("a verb is required: %s", strings.Join(names, ", "))
		}
		return nil
	}
	for _, s := range subs {
		if s.name == args[0] {
			return s.run(ctx, env, cmd+" "+s.name, args[1:])
		}
	}
	return usagef("unknown verb %q", args[0])
}

func workersVerbs() []subcommand {
	return []subcommand{
		{name: "list", args: "[--json]", summary: "list the workers of every node, with their state", run: runWorkersList},
		{name: "health", args: "--node NAME [--json]", summary: "check a node's hive and its workers", run: runWorkersHealth},
		{name: "shutdown", args: "--id ID", summary: "stop a worker and unload its model", run: runWorkersShutdown},
	}
}

// runWorkers is rbee workers list | health | shutdown.
func runWorkers(ctx context.Context, env *Env, args []string) error {
	return runSubcommand(ctx, env, "workers", workersVerbs(), args)
}

func verbUsage(subs []subcommand, name string) (args, summary string) {
	for _, s := range subs {
		if strings.HasSuffix(name, " "+s.name) {
			return s.args, s.summary
		}
	}
	return "", ""
}

func runWorkersList(ctx context.Context, env *Env, name string, args []string) error {
	fs := cliutil.NewFlagSet(name)
	qf := addQueenFlags(fs)
	asJSON := fs.Bool("json", false, "print the list as JSON")
	u, s := verbUsage(workersVerbs(), name)
	if err := cliutil.Parse(fs, args, env.Stdout, u, s); err != nil {
		return err
	}
	q, err := qf.client(env)
	if err != nil {
		return err
	}
	l, err := q.WorkerList(ctx)
	if err != nil {
		return q.explain(err)
	}
	if *asJSON {
		return printJSON(env.Stdout, l)
	}
	if len(l.Workers) == 0 && len(l.Unreachable) == 0 {
		fmt.Fprintln(env.Stdout, "No workers.")
		return nil
	}
	printWorkerTable(env.Stdout, l.Workers, l.Unreachable, true)
	// Why each unreachable node is missing, and what to do, on stderr.
	for _, u := range l.Unreachable {
		msg, hint := "no answer", ""
		if u.Error != nil {
			msg, hint = fmt.Sprintf("%s (%s)", oneLine(u.Error.Message), u.Error.Code), u.Error.Hint()
		}
		fmt.Fprintf(env.Stderr, "node %s is unreachable: %s\n", u.Node, msg)
		if hint != "" {
			fmt.Fprintf(env.Stderr, "hint: %s\n", hint)
		}
	}
	return nil
}

func runWorkersHealth(ctx context.Context, env *Env, name string, args []string) error {
	fs := cliutil.NewFlagSet(name)
	qf := addQueenFlags(fs)
	node := fs.String("node", "", "the node to check (required; \"local\" is this machine)")
	asJSON := fs.Bool("json", false, "print the answer as JSON")
	u, s := verbUsage(workersVerbs(), name)
	if err := cliutil.Parse(fs, args, env.Stdout, u, s); err != nil {
		return err
	}
	if *node == "" {
		return usagef("--node is required")
	}
	if err := api.ValidateNodeName(*node); err != nil {
		return usagef("--node: %s", err.Message)
	}
	q, err := qf.client(env)
	if err != nil {
		return err
	}
	h, err := q.WorkersHealth(ctx, *node)
	if err != nil {
		return q.explain(err)
	}
	if *asJSON {
		return printJSON(env.Stdout, h)
	}
	fmt.Fprintf(env.Stdout, "Node %s: hive %s (version %s, api %s) at %s\n", h.Node, orDash(h.Hive.Status), orDash(h.Hive.Version), orDash(h.Hive.APIVersion), orDash(h.HiveURL))
	if len(h.Workers) == 0 {
		fmt.Fprintln(env.Stdout, "No workers.")
		return nil
	}
	printWorkers(env.Stdout, h.Workers, false)
	return nil
}

func runWorkersShutdown(ctx context.Context, env *Env, name string, args []string) error {
	fs := cliutil.NewFlagSet(name)
	qf := addQueenFlags(fs)
	id := fs.String("id", "", "the worker's id, as rbee workers list shows it (required)")
	u, s := verbUsage(workersVerbs(), name)
	if err := cliutil.Parse(fs, args, env.Stdout, u, s); err != nil {
		return err
	}
	if *id == "" {
		return usagef("--id is required")
	}
	if err := api.ValidateWorkerID(*id); err != nil {
		return usagef("--id: %s", err.Message)
	}
	q, err := qf.client(env)
	if err != nil {
		return err
	}
	if err := q.ShutdownWorker(ctx, *id); err != nil {
		return q.explain(err)
	}
	fmt.Fprintf(env.Stdout, "Worker %s stopped.\n", *id)
	return nil
}

// printWorkers prints a table of workers, with their node when withNode.
func printWorkers(w io.Writer, ws []rbee.WorkerInfo, withNode bool) {
	printWorkerTable(w, ws, nil, withNode)
}

// slotsInUse is the SLOTS column's count: what the queen says is in use,
// or, from a queen that does not say, what the worker's free slots leave.
func slotsInUse(x rbee.WorkerInfo) int {
	if x.State != rbee.StateIdle && x.State != rbee.StateBusy {
		return x.SlotsBusy
	}
	return max(x.SlotsBusy, x.SlotsTotal-x.SlotsAvailable, 0)
}

// stateUnreachable is the STATE of a node's row when its hive did not answer.
const stateUnreachable = "unreachable"

// printWorkerTable prints a table of workers, with their node when
// withNode, and one row per unreachable node, in node order.
func printWorkerTable(w io.Writer, ws []rbee.WorkerInfo, down []rbee.UnreachableNode, withNode bool) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if withNode {
		fmt.Fprint(tw, "NODE\t")
	}
	fmt.Fprintln(tw, "WORKER\tMODEL\tBACKEND\tSTATE\tSLOTS\tQUEUE\tLAST ACTIVE\tURL")
	now := time.Now()
	row := func(x rbee.WorkerInfo) {
		if withNode {
			fmt.Fprintf(tw, "%s\t", orDash(x.Node))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s:%d\t%s\t%d/%d\t%d\t%s\t%s\n", x.ID, x.ModelRef, orDash(string(x.Backend)), x.Device, orDash(string(x.State)),
			slotsInUse(x), x.SlotsTotal, x.QueueDepth, ago(now, x.LastActivity), x.URL)
	}
	downRow := func(u rbee.UnreachableNode) {
		if withNode {
			fmt.Fprintf(tw, "%s\t", orDash(u.Node))
		}
		fmt.Fprintf(tw, "-\t-\t-\t%s\t-\t-\t-\t-\n", stateUnreachable)
	}
	// Both lists come sorted by node; merge them so a node's rows stay together.
	i := 0
	for _, x := range ws {
		for ; i < len(down) && down[i].Node < x.Node; i++ {
			downRow(down[i])
		}
		row(x)
	}
	for ; i < len(down); i++ {
		downRow(down[i])
	}
	tw.Flush()
}

// ago says how long before now t was ("12s ago"); "-" for the zero time.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return t.Local().Format("2006-01-02 15:04")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
