// Package orchestrator is the queen: the daemon on the control machine that
// keeps the node registry, starts hives, finds or spawns workers and relays
// inference streams to clients (docs/architecture.md).
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
// GET /v2/logs?node=&follow=&lines= relays the node's hive's GET /v1/logs
// (its own log and its workers'), each line with the node's name.
//
// # The web console
//
// Unless Config.DisableUI is set, the queen serves a web page (package
// ui) at / and /ui/, without a token: it is static and signs in with the
// API key like any client. It reads GET /v2/events, a stream of cluster
// snapshots (nodes with their hives' GET /v1/info, workers with their
// recent speed, tasks running and queued, downloads), sent whenever the
// cluster changed; the streams share one look at the cluster per second.
// GET /v2/models lists the nodes' catalogs and POST /v2/models/download
// pulls an hf: model onto a node, relaying the hive's download. OpenAI
// answers name the node and worker that served them in the X-Rbee-Node and
// X-Rbee-Worker headers (docs/console.md).
//
// # Remote nodes
//
// POST /v2/registry/beehives/add checks every field, then connects to the
// node over SSH (package sshx: keys or agent, host keys checked against
// Config.KnownHostsPath; an unknown host only with accept_new_host_key,
// which records its key) and runs echo; only then is the node saved, as
// reachable, with a hive token of its own kept in the registry (a 0600
// file). POST /v2/registry/beehives/install uploads the queen's binary to
// the node when uname -sm matches, else clones the node's git_repo_url and
// runs go build there; both stream their narration and end with done or
// an error event naming the failed step and its output.
//
// A task on a registry node whose hive does not answer starts that hive
// over SSH — <binary_path> hive … --home <install_path>/home, detached,
// logging to <install_path>/logs/hive.log, its token passed in the
// environment over the session's standard input — polls its health with
// backoff and records the node's status. The queen keeps one SSH
// connection per node and dials again when it has died. A node in tunnel
// mode has its hive bound to the node's loopback and is reached, with its
// workers, through forwarded ports on that connection; otherwise the hive
// listens on 0.0.0.0 and advertises workers by the node's ssh_host.
//
// # Ownership
//
// The queen stops what it started — the local hive and the hives it
// started over SSH, and through them their workers — and leaves alone a
// hive it found running. It runs no goroutine of its own outside Run:
// each request's work runs on the request's goroutine, and contexts are
// passed, never stored.
package orchestrator
