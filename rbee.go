package rbee

import (
	"rbee/api"
	"rbee/internal/sse"
)

// Version is the rbee release this library is. Keepers and hives must share
// its major.minor.
const Version = api.Version

// LocalNode is the node that needs no registration: the queen runs its hive
// as a child process on its own machine.
const LocalNode = api.LocalNode

// AutoNode as a task's Node (as an empty Node does) lets the queen choose
// where the task runs: a worker of the model with a free slot, else the
// node with the shortest queue for it, else a node holding the model that
// can run it, else the local node. A task's narration says where and why.
const AutoNode = api.AutoNode

// The wire types, so that programs import only "rbee". They are aliases of
// the types in package rbee/api that client and daemons share.
type (
	// TaskRequest is one inference on a node: the body of POST /v2/tasks.
	// Nil sampling fields take llama.cpp's defaults.
	TaskRequest = api.TaskRequest
	// SamplingParams are the generation parameters a TaskRequest embeds:
	// max_tokens, temperature, top_p, top_k, min_p, repeat_penalty, seed
	// and stop. Nil fields take llama.cpp's defaults.
	SamplingParams = api.SamplingParams
	// Event is one event of an inference stream. Exactly one of its
	// pointers (Narration, Progress, Token, Done, Log) matches Kind.
	Event = api.Event
	// EventKind names an event: narration, progress, token, done, error or
	// log.
	EventKind = api.EventKind
	// Narration is a sentence for people about what a daemon is doing.
	Narration = api.Narration
	// Progress reports a model download or a model load.
	Progress = api.Progress
	// Token is one piece of generated text.
	Token = api.Token
	// Done ends an inference: token count, duration and stop reason.
	Done = api.Done
	// Health is the queen's answer to GET /health.
	Health = api.Health
	// WorkerState is where a worker is in its life: loading, idle, busy,
	// stopping or failed.
	WorkerState = api.WorkerState
	// Backend names a compute backend: cpu, cuda or metal.
	Backend = api.Backend
	// Stage says what a Progress event reports.
	Stage = api.Stage
	// StopReason says why a generation ended.
	StopReason = api.StopReason
	// NodeStatus is whether the queen could last reach a node.
	NodeStatus = api.NodeStatus
	// WorkerInfo is one worker of a node, as the queen lists them.
	WorkerInfo = api.WorkerInfo
	// WorkerList is the queen's cluster-wide worker list: the workers of
	// the nodes that answered, and the nodes that did not.
	WorkerList = api.WorkerList
	// UnreachableNode is a node left out of a WorkerList, with the error.
	UnreachableNode = api.UnreachableNode
	// QueueStatus is the queen's queue: the tasks waiting for a free slot,
	// per node and model, and how busy each worker is.
	QueueStatus = api.QueueStatus
	// Queue is the waiting tasks of one model on one node, oldest first.
	Queue = api.Queue
	// QueuedTask is one task waiting for a free slot.
	QueuedTask = api.QueuedTask
	// WorkerSlots is one worker's slots in use, slot count and queue depth.
	WorkerSlots = api.WorkerSlots
	// NodeHealth is a node's hive health and its workers.
	NodeHealth = api.NodeHealth
	// HiveHealth is a hive's answer to its health check.
	HiveHealth = api.HiveHealth
	// Node is a row of the queen's node registry.
	Node = api.Node
	// ClusterModels is every answering node's model catalog ([Client.Models]).
	ClusterModels = api.ClusterModels
	// NodeModels is one node's model catalog, or why it is missing.
	NodeModels = api.NodeModels
	// ModelEntry is one model of a node's catalog.
	ModelEntry = api.ModelEntry
	// ModelMeta is what a model file's GGUF header says about it.
	ModelMeta = api.ModelMeta
	// PullRequest asks the queen to download an hf: model onto a node
	// ([Client.Pull]).
	PullRequest = api.PullRequest
	// AddNodeRequest registers a node: its SSH address and credentials,
	// where rbee lives there and its hive's port (the body of POST
	// /v2/registry/beehives/add).
	AddNodeRequest = api.AddNodeRequest
	// InstallRequest names a node to install rbee on.
	InstallRequest = api.InstallRequest
	// Error is rbee's error: a code, a message for people and details for
	// programs. Every failure the queen reports is an *Error; match it with
	// errors.Is against the sentinels below or read it with errors.As.
	Error = api.Error
	// Code is an error's machine-readable code ("NODE_NOT_FOUND").
	Code = api.Code
	// LogLine is one line of a node's logs, as [Client.Logs] yields them.
	LogLine = api.LogLine
)

// SourceHive is the Source of a hive's own log lines; a worker's lines
// carry its worker id.
const SourceHive = api.SourceHive

// How many log lines [Client.Logs] may ask for, and how many rbee logs
// shows by default.
const (
	DefaultLogLines = api.DefaultLogLines
	MaxLogLines     = api.MaxLogLines
)

// The kinds of events.
const (
	KindNarration = api.KindNarration
	KindProgress  = api.KindProgress
	KindToken     = api.KindToken
	KindDone      = api.KindDone
	KindError     = api.KindError
	KindLog       = api.KindLog
)

// Stop reasons of a [Done] event.
const (
	StopMaxTokens = api.StopMaxTokens
	StopEOS       = api.StopEOS
	StopString    = api.StopString
	StopCancelled = api.StopCancelled
)

// Progress stages.
const (
	StageDownloading = api.StageDownloading
	StageComplete    = api.StageComplete
	StageLoading     = api.StageLoading
	StageReady       = api.StageReady
)

// Worker states.
const (
	StateLoading  = api.StateLoading
	StateIdle     = api.StateIdle
	StateBusy     = api.StateBusy
	StateStopping = api.StateStopping
	StateFailed   = api.StateFailed
)

// Backends.
const (
	BackendCPU   = api.BackendCPU
	BackendCUDA  = api.BackendCUDA
	BackendMetal = api.BackendMetal
)

// Node statuses in the queen's registry.
const (
	NodeUnknown     = api.NodeUnknown
	NodeReachable   = api.NodeReachable
	NodeUnreachable = api.NodeUnreachable
)

// ActionTaskStart is the action of the narration that opens every inference
// stream [Client.Infer] yields; its RequestID is the task's id.
const ActionTaskStart = "task_start"

// Sentinel errors, one per code, for errors.Is. They match any *[Error] with
// the same code, whatever its message.
var (
	ErrInvalidRequest      = api.ErrInvalidRequest
	ErrMissingAPIKey       = api.ErrMissingAPIKey
	ErrInvalidAPIKey       = api.ErrInvalidAPIKey
	ErrForbidden           = api.ErrForbidden
	ErrNodeNotFound        = api.ErrNodeNotFound
	ErrWorkerNotFound      = api.ErrWorkerNotFound
	ErrModelNotFound       = api.ErrModelNotFound
	ErrNotFound            = api.ErrNotFound
	ErrMethodNotAllowed    = api.ErrMethodNotAllowed
	ErrRequestTimeout      = api.ErrRequestTimeout
	ErrNodeAlreadyExists   = api.ErrNodeAlreadyExists
	ErrVersionMismatch     = api.ErrVersionMismatch
	ErrPayloadTooLarge     = api.ErrPayloadTooLarge
	ErrRateLimited         = api.ErrRateLimited
	ErrInferenceFailed     = api.ErrInferenceFailed
	ErrInternal            = api.ErrInternal
	ErrSSHConnectionFailed = api.ErrSSHConnectionFailed
	ErrSSHAuthFailed       = api.ErrSSHAuthFailed
	ErrHostKeyMismatch     = api.ErrHostKeyMismatch
	ErrDownloadFailed      = api.ErrDownloadFailed
	ErrChecksumMismatch    = api.ErrChecksumMismatch
	ErrWorkerCrashed       = api.ErrWorkerCrashed
	ErrAllSlotsBusy        = api.ErrAllSlotsBusy
	ErrShuttingDown        = api.ErrShuttingDown
	ErrConnectionTimeout   = api.ErrConnectionTimeout
	ErrDownloadTimeout     = api.ErrDownloadTimeout
	ErrLoadingTimeout      = api.ErrLoadingTimeout
	ErrInsufficientRAM     = api.ErrInsufficientRAM
	ErrVRAMExhausted       = api.ErrVRAMExhausted
	ErrInsufficientDisk    = api.ErrInsufficientDisk
	ErrBackendUnavailable  = api.ErrBackendUnavailable
)

// ErrStreamClosed means an inference stream ended without its end marker:
// the queen (or the connection to it) went away mid-stream. [Client.Infer]
// yields it wrapped, so test for it with errors.Is.
var ErrStreamClosed = sse.ErrStreamClosed
