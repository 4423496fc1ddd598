package api

import "time"

// Health is the body of the queen's GET /health and the worker's GET /v1/health.
type Health struct {
	Status  string      `json:"status"` // "ok"
	Version string      `json:"version"`
	State   WorkerState `json:"state,omitempty"` // worker: loading, idle, busy
}

// WorkerHealth is the body of the worker's GET /v1/health (public): what the
// hive's monitor and registry read.
type WorkerHealth struct {
	Status       string      `json:"status"` // "ok"
	Version      string      `json:"version"`
	WorkerID     string      `json:"worker_id"`
	ModelRef     string      `json:"model_ref"`
	State        WorkerState `json:"state"` // loading, idle, busy, stopping
	SlotsTotal   int         `json:"slots_total"`
	SlotsBusy    int         `json:"slots_busy"`
	LastActivity time.Time   `json:"last_activity"` // the end of the last inference (start of the worker before any)
	// Batch is the number of inferences the worker's last forward pass
	// advanced together, and Steps the forward passes it has run.
	Batch int   `json:"batch,omitempty"`
	Steps int64 `json:"steps,omitempty"`
}

// HiveHealth is the body of the hive's GET /v1/health.
type HiveHealth struct {
	Status     string `json:"status"` // "alive"
	Version    string `json:"version"`
	APIVersion string `json:"api_version"`
}

// WorkerState is where a worker is in its life. A worker moves forward
// only: loading, then idle and busy (back and forth), then stopping; failed
// ends a worker that could not load or crashed.
type WorkerState string

// Worker states.
const (
	StateLoading  WorkerState = "loading"
	StateIdle     WorkerState = "idle"
	StateBusy     WorkerState = "busy"
	StateStopping WorkerState = "stopping"
	StateFailed   WorkerState = "failed"
)

// Backend names the compute backend a worker runs on.
type Backend string

// Backends.
const (
	BackendCPU   Backend = "cpu"
	BackendCUDA  Backend = "cuda"
	BackendMetal Backend = "metal"
)

// SamplingParams are the generation parameters as a request carries them:
// every request type that runs an inference embeds this struct, so its
// fields appear at the top level of the request's JSON. A nil field (or a
// zero MaxTokens) takes the default (DefaultTemperature, …); Validate checks
// the values and applies the defaults.
type SamplingParams struct {
	MaxTokens     int      `json:"max_tokens,omitempty"` // 0 means DefaultMaxTokens
	Temperature   *float64 `json:"temperature,omitempty"`
	TopP          *float64 `json:"top_p,omitempty"`
	TopK          *int     `json:"top_k,omitempty"`
	MinP          *float64 `json:"min_p,omitempty"`
	RepeatPenalty *float64 `json:"repeat_penalty,omitempty"`
	Seed          *uint64  `json:"seed,omitempty"`
	Stop          []string `json:"stop,omitempty"`
	// PresencePenalty and FrequencyPenalty are OpenAI's penalties, -2 to 2
	// (nil or 0: off): a token's logit drops by PresencePenalty once it has
	// been generated and by FrequencyPenalty for each time it was, counting
	// the generated tokens only (repeat_penalty covers the prompt).
	PresencePenalty  *float64 `json:"presence_penalty,omitempty"`
	FrequencyPenalty *float64 `json:"frequency_penalty,omitempty"`
	// Logprobs asks for each generated token's log-probability on its
	// token event, with the TopLogprobs (0 to 20) most likely tokens at its
	// position. The probabilities are the model's own: the log-softmax of
	// the raw logits over the whole vocabulary, before penalties,
	// temperature and filters (as OpenAI and llama.cpp's server report).
	Logprobs    bool `json:"logprobs,omitempty"`
	TopLogprobs int  `json:"top_logprobs,omitempty"`
	// Format constrains the output to JSON (any value, or one valid against
	// a JSON schema); nil means free text.
	Format *Format `json:"format,omitempty"`
}

// TaskRequest is the body of the queen's POST /v2/tasks: one inference on a
// node. Nil sampling fields take the defaults (DefaultTemperature, …). An
// empty Node, or AutoNode, lets the queen choose the node.
type TaskRequest struct {
	Node   string `json:"node"`
	Model  string `json:"model"`
	Prompt string `json:"prompt"`
	SamplingParams
	Backend Backend `json:"backend,omitempty"` // "" means cpu
	Device  *int    `json:"device,omitempty"`  // nil means 0

	// Messages, instead of Prompt, is a chat: the worker formats it with the
	// model's chat template (exactly one of the two is given).
	Messages []ChatMessage `json:"messages,omitempty"`
	ToolUse
}

// Sampling defaults (llama.cpp's).
const (
	DefaultMaxTokens   = 128
	DefaultTemperature = 0.8
	DefaultTopP        = 0.95
	DefaultTopK        = 40
	DefaultMinP        = 0.05
)

// InferenceRequest is the body of the worker's POST /v1/inference.
type InferenceRequest struct {
	Prompt string `json:"prompt"`
	SamplingParams
	Stream *bool `json:"stream,omitempty"` // nil or true: SSE; false: one JSON InferenceResult

	// Messages, instead of Prompt, is a chat formatted with the model's chat
	// template (exactly one of the two is given).
	Messages []ChatMessage `json:"messages,omitempty"`
	ToolUse
}

// InferenceResult is the worker's answer to a non-streaming inference.
type InferenceResult struct {
	Text string `json:"text"`
	Done
}

// Inference returns the worker request that carries t's generation parameters.
func (t *TaskRequest) Inference() InferenceRequest {
	return InferenceRequest{Prompt: t.Prompt, SamplingParams: t.SamplingParams, Messages: t.Messages, ToolUse: t.ToolUse}
}

// SpawnRequest is the body of the hive's POST /v1/workers/spawn.
type SpawnRequest struct {
	ModelRef string  `json:"model_ref"`
	Backend  Backend `json:"backend"`
	Device   int     `json:"device"`
}

// PreflightResult answers the hive's POST /v1/workers/preflight (whose body
// is a SpawnRequest): a worker of the catalogued model would pass the
// preflight now, needing RequiredMB of the AvailableMB of memory. A model
// not in the catalog is MODEL_NOT_FOUND, a failed check its preflight
// error. Nothing is started or reserved.
type PreflightResult struct {
	RequiredMB  int64 `json:"required_mb"`
	AvailableMB int64 `json:"available_mb"`
}

// SpawnResponse answers a spawn: the worker is loading.
type SpawnResponse struct {
	WorkerID string      `json:"worker_id"`
	URL      string      `json:"url"`
	State    WorkerState `json:"state"` // "loading"
}

// ReadyCallback is the body of the hive's POST /v1/workers/ready, sent by a
// worker when its model is loaded.
type ReadyCallback struct {
	WorkerID string  `json:"worker_id"`
	URL      string  `json:"url"`
	ModelRef string  `json:"model_ref"`
	Backend  Backend `json:"backend"`
	Device   int     `json:"device"`
}

// WorkerInfo is one entry of a hive's (or, with Node, the queen's) worker list.
type WorkerInfo struct {
	ID             string      `json:"id"`
	Node           string      `json:"node,omitempty"`
	URL            string      `json:"url"`
	ModelRef       string      `json:"model_ref"`
	Backend        Backend     `json:"backend"`
	Device         int         `json:"device"`
	State          WorkerState `json:"state"`
	SlotsTotal     int         `json:"slots_total"`
	SlotsAvailable int         `json:"slots_available"`
	LastActivity   time.Time   `json:"last_activity"`
	PID            int         `json:"pid,omitempty"`
	// SlotsBusy and QueueDepth are set in the queen's answer only (a hive
	// leaves them 0): the slots
	// in use (the more of what the worker reported and the tasks the queen
	// has running on it) and how many tasks wait in the queen's queue for
	// this worker.
	SlotsBusy  int `json:"slots_busy"`
	QueueDepth int `json:"queue_depth"`
}

// WorkerList is the body of GET /v1/workers/list (hive) and /v2/workers/list (queen).
type WorkerList struct {
	Workers []WorkerInfo `json:"workers"`
	// Unreachable, in the queen's answer only, names the nodes whose hive
	// could not be asked for its workers, so that a missing node is not
	// taken for one without workers. It is left out when every node
	// answered (a reader of "workers" alone still works).
	Unreachable []UnreachableNode `json:"unreachable,omitempty"`
}

// UnreachableNode is a node the queen could not list the workers of, with
// why, as an error envelope's body: CONNECTION_TIMEOUT when its hive does not
// answer, an SSH code when its tunnel cannot be opened, or the error its
// hive answered with. Error.Details carries node and a hint.
type UnreachableNode struct {
	Node  string `json:"node"`
	Error *Error `json:"error"`
}

// WorkerShutdownRequest is the body of POST /v1/workers/shutdown and /v2/workers/shutdown.
type WorkerShutdownRequest struct {
	WorkerID string `json:"worker_id"`
}

// NodeHealth is the body of the queen's GET /v2/workers/health?node=.
type NodeHealth struct {
	Node    string       `json:"node"`
	Hive    HiveHealth   `json:"hive"`
	HiveURL string       `json:"hive_url"`
	Workers []WorkerInfo `json:"workers"`
}

// ReadyResponse is the body of the worker's GET /v1/ready.
type ReadyResponse struct {
	Ready       bool        `json:"ready"`
	State       WorkerState `json:"state"`
	ProgressURL string      `json:"progress_url,omitempty"`
	ModelLoaded bool        `json:"model_loaded"`
	// While loading: how far it got.
	LayersLoaded int `json:"layers_loaded,omitempty"`
	LayersTotal  int `json:"layers_total,omitempty"`
}

// ModelEntry is a row of a hive's model catalog (GET /v1/models).
type ModelEntry struct {
	ID               string `json:"id"`
	Provider         string `json:"provider"` // "hf" or "file"
	Reference        string `json:"reference"`
	LocalPath        string `json:"local_path"`
	SizeBytes        int64  `json:"size_bytes"`
	SHA256           string `json:"sha256,omitempty"`
	DownloadedAtUnix int64  `json:"downloaded_at_unix"`
	// Meta is read from the file's GGUF header when the hive lists its
	// models; nil when the file is missing or unreadable.
	Meta *ModelMeta `json:"meta,omitempty"`
}

// ModelList is the body of the hive's GET /v1/models.
type ModelList struct {
	Models []ModelEntry `json:"models"`
}

// NodeStatus is what the queen last learned of a node: whether it could
// reach it.
type NodeStatus string

// Node statuses in the queen's registry.
const (
	NodeUnknown     NodeStatus = "unknown"
	NodeReachable   NodeStatus = "reachable"
	NodeUnreachable NodeStatus = "unreachable"
)

// Node is a row of the queen's node registry (table beehives).
type Node struct {
	Name              string     `json:"node_name"`
	SSHHost           string     `json:"ssh_host"`
	SSHPort           int        `json:"ssh_port"`
	SSHUser           string     `json:"ssh_user"`
	SSHKeyPath        string     `json:"ssh_key_path"`
	GitRepoURL        string     `json:"git_repo_url"`
	GitBranch         string     `json:"git_branch"`
	InstallPath       string     `json:"install_path"`
	HivePort          int        `json:"hive_port"`
	LastConnectedUnix int64      `json:"last_connected_unix"`
	LastError         string     `json:"last_error,omitempty"`
	Status            NodeStatus `json:"status"`
	// Tunnel: the queen reaches the node's hive and workers through its SSH
	// connection (local port forwarding) instead of the network.
	Tunnel bool `json:"tunnel,omitempty"`
}

// NodeList is the body of GET /v2/registry/beehives/list.
type NodeList struct {
	Nodes []Node `json:"nodes"`
}

// AddNodeRequest is the body of POST /v2/registry/beehives/add.
type AddNodeRequest struct {
	Name             string `json:"node_name"`
	SSHHost          string `json:"ssh_host"`
	SSHPort          int    `json:"ssh_port,omitempty"` // 22
	SSHUser          string `json:"ssh_user"`
	SSHKeyPath       string `json:"ssh_key_path"`
	GitRepoURL       string `json:"git_repo_url,omitempty"`
	GitBranch        string `json:"git_branch,omitempty"` // main
	InstallPath      string `json:"install_path"`
	HivePort         int    `json:"hive_port,omitempty"` // 9200
	AcceptNewHostKey bool   `json:"accept_new_host_key,omitempty"`
	// Tunnel: reach the hive through the SSH connection (see Node.Tunnel).
	Tunnel bool `json:"tunnel,omitempty"`
}

// NodeRequest names a node (POST /v2/registry/beehives/remove and /install).
type NodeRequest struct {
	Name string `json:"node_name"`
}

// InstallRequest is the body of POST /v2/registry/beehives/install.
type InstallRequest struct {
	Name string `json:"node_name"`
	// FromSource builds rbee on the node (git clone of the node's
	// git_repo_url at git_branch, then go build) even when the queen's own
	// binary would run there.
	FromSource bool `json:"from_source,omitempty"`
}

// QueueStatus is the body of the queen's GET /v2/queue: the tasks waiting
// for a free slot and how busy each worker is.
type QueueStatus struct {
	// Depth is how many tasks wait, over all queues; MaxQueue the most
	// that may (0: queueing is off, a busy worker is retried instead);
	// TimeoutMs how long a task may wait before it fails.
	Depth     int   `json:"depth"`
	MaxQueue  int   `json:"max_queue"`
	TimeoutMs int64 `json:"timeout_ms"`
	// Queues has one entry per node and model with waiting tasks.
	Queues []Queue `json:"queues"`
	// Workers has one entry per ready worker of the nodes that answered.
	Workers []WorkerSlots `json:"workers"`
	// Unreachable names the nodes whose workers could not be listed.
	Unreachable []UnreachableNode `json:"unreachable,omitempty"`
}

// Queue is the FIFO queue of one model on one node.
type Queue struct {
	Node  string       `json:"node"`
	Model string       `json:"model"`
	Tasks []QueuedTask `json:"tasks"`
}

// QueuedTask is one task waiting for a slot.
type QueuedTask struct {
	ID string `json:"id"`
	// Position counts from 1, the next task to go.
	Position int `json:"position"`
	// WorkerID is the worker the task waits for.
	WorkerID     string    `json:"worker_id,omitempty"`
	WaitingSince time.Time `json:"waiting_since"`
}

// WorkerSlots is how busy one worker is, as the queen sees it.
type WorkerSlots struct {
	Node       string `json:"node"`
	WorkerID   string `json:"worker_id"`
	Model      string `json:"model"`
	SlotsBusy  int    `json:"slots_busy"`
	SlotsTotal int    `json:"slots_total"`
	QueueDepth int    `json:"queue_depth"`
}
