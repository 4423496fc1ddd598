// Package rbee runs large language models on the machines you already own,
// from Go. It is the library behind the rbee command: everything the command
// does, a Go program can do by importing "rbee" alone.
//
// rbee has four roles. A keeper (the rbee command, or a [Client]) asks the
// queen for an inference; the queen (an orchestrator daemon, or an embedded
// [Orchestrator]) finds the node, makes sure its hive runs, and reuses or
// starts a worker with the model; the hive (one per node) keeps the node's
// models and worker processes; a worker serves one loaded model with a
// pure-Go GGUF engine and streams its tokens back through the queen.
//
// # Talking to a queen
//
// A [Client] talks to a running queen over HTTP. Its zero value uses the
// queen at [DefaultURL] without a token:
//
//	var c rbee.Client
//	for ev, err := range c.Infer(ctx, rbee.TaskRequest{
//		Node:   rbee.LocalNode,
//		Model:  "file:/models/tinyllama-Q4_K_M.gguf",
//		Prompt: "Once upon a time",
//	}) {
//		if err != nil {
//			return err
//		}
//		if ev.Kind == rbee.KindToken {
//			fmt.Print(ev.Token.Token)
//		}
//	}
//
// [Client.Infer] yields narration, progress, token and done [Event] values
// as they arrive. Its first event carries the task's id
// ([ActionTaskStart]), which [Client.CancelTask] accepts. The other methods
// list and stop workers ([Client.Workers], [Client.WorkersHealth],
// [Client.ShutdownWorker]) and manage the node registry ([Client.AddNode],
// which tests the node's SSH connection before saving it,
// [Client.InstallNode], [Client.Nodes], [Client.RemoveNode]). Remote nodes
// are reached over SSH: the queen starts their hives itself when a task
// needs one.
//
// # Embedding a queen
//
// An [Orchestrator] is a queen inside your program, the way tsnet embeds a
// Tailscale node: set its fields, call [Orchestrator.Start] (or
// [Orchestrator.Up] to wait until it serves), use [Orchestrator.Client] for
// an in-process [Client] that needs no network, and [Orchestrator.Close] to
// stop it and everything it started. [Orchestrator.Handler] gives its HTTP
// handler to mount in a server of your own.
//
// The queen runs the local node's hive, and the hive its workers, as child
// processes of a binary that can play those roles: the rbee command, or your
// own program if it calls [HandleChildProcess] first thing in main.
//
// # Errors
//
// Every failure a queen, hive or worker reports is an *[Error] with a
// [Code], a message for people and details for programs (details "hint"
// holds advice; its Hint method returns it). Test for a code with errors.Is and
// the sentinels ([ErrNodeNotFound], [ErrAllSlotsBusy], …); read the fields
// with errors.As. A stream that breaks off mid-way is [ErrStreamClosed].
package rbee
