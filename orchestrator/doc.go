// Package orchestrator is the queen: the daemon on the control machine that
// keeps the node registry, starts hives, finds or spawns workers and relays
// inference streams to clients (DESIGN §1–2).
//
// # Using it
//
// [New] makes a [Queen] from a [Config] whose zero value works; [Queen.Run]
// serves it until its context ends and then shuts everything it started
// down; [Queen.Handler] and [Queen.Close] let a program serve the API itself
// (package rbee's Orchestrator does). [Main] is `rbee queen`.
//
// # What a task does
//
// POST /v2/tasks validates the request and looks the node up (plain error
// envelopes), then answers with one event stream: it makes sure the node's
// hive answers (three attempts, 0/200/400 ms; the local node's hive is
// started as a child process if none answers), checks the hive's version,
// reuses an idle worker with the model or spawns one and relays its loading
// progress, then relays the worker's inference stream as is, retrying a
// busy worker after 1, 2 and 4 s. DELETE /v2/tasks/{id} and a client that
// goes away both cancel the worker's generation.
//
// # Ownership
//
// The queen stops what it started — the local hive, and through it that
// hive's workers — and leaves alone a hive it found running. It runs no
// goroutine of its own outside Run: each request's work runs on the
// request's goroutine, and contexts are passed, never stored.
package orchestrator
