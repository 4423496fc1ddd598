// Package api holds the types that rbee's client and daemons exchange: the
// JSON bodies of every endpoint, the events of the SSE streams, the error
// envelope with its codes, and the validation rules of docs/protocol.md.
//
// It is a leaf package: it imports nothing of rbee, so the root package, the
// queen (orchestrator), the hive (pool) and the worker can all share it
// without import cycles. The root package rbee re-exports what library users
// need.
package api

// Version is the rbee release. Keeper and hive must share major.minor.
const Version = "0.1.0"

// APIVersion is the version of the hive and worker HTTP APIs.
const APIVersion = "v1"

// Default ports.
const (
	DefaultQueenPort  = 8080
	DefaultHivePort   = 9200
	DefaultWorkerPort = 8001
)

// LocalNode is the node that needs no registration: the queen runs its hive
// as a child process on the queen's own machine.
const LocalNode = "local"

// AutoNode, as a task's node (or an empty node), lets the queen choose
// where the task runs: a worker of the model with a free slot, else the
// node with the shortest queue for it, else a node that holds the model
// and can run it, else the local node. It names no node, so no node may be
// registered under it.
const AutoNode = "auto"

// MaxBodyBytes caps every request body (PAYLOAD_TOO_LARGE beyond).
const MaxBodyBytes = 1 << 20
