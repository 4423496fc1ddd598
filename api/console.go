package api

import "time"

// KindSnapshot is the event of the queen's GET /v2/events stream: the whole
// cluster as the queen sees it at one moment (a Snapshot).
const KindSnapshot EventKind = "snapshot"

// HiveInfo is the body of the hive's GET /v1/info: what the node it runs
// on offers. It needs the hive's API key (unlike GET /v1/health).
type HiveInfo struct {
	Version string `json:"version"`
	// RAMAvailableMB is the memory the kernel says new programs can use
	// without swapping, in MiB; 0 when the machine does not say.
	RAMAvailableMB int64 `json:"ram_available_mb"`
	// CPUs is the number of logical CPUs the hive may use.
	CPUs int `json:"cpus"`
	// Devices are the node's accelerators (none on a CPU-only node).
	Devices []DeviceInfo `json:"devices"`
}

// DeviceInfo is one accelerator of a node.
type DeviceInfo struct {
	Backend Backend `json:"backend"`
	Index   int     `json:"index"`
	// VRAMMB is the device's free memory in MiB.
	VRAMMB int64 `json:"vram_mb"`
}

// Snapshot is one event of the queen's GET /v2/events: nodes, workers,
// tasks and downloads as the queen knows them. A stream sends one when it
// opens and another whenever something in it changes.
type Snapshot struct {
	Time    time.Time `json:"time"`
	Version string    `json:"version"`
	// Nodes are the local node and every registered node.
	Nodes []NodeSnapshot `json:"nodes"`
	// Workers are those of the nodes that answered, as GET
	// /v2/workers/list gives them, with their recent speed.
	Workers []WorkerSnapshot `json:"workers"`
	// Tasks are the queen's tasks, running and queued, oldest first.
	Tasks []TaskSnapshot `json:"tasks"`
	// Downloads are the model downloads the queen is following.
	Downloads []DownloadSnapshot `json:"downloads"`
	// QueueDepth is how many tasks wait for a slot; MaxQueue the most that may.
	QueueDepth int `json:"queue_depth"`
	MaxQueue   int `json:"max_queue"`
	// TokensPerSecond is the cluster's generation speed since the
	// previous snapshot of the stream (tokens the queen relayed);
	// TokensTotal counts them since the queen started.
	TokensPerSecond float64 `json:"tokens_per_second"`
	TokensTotal     int64   `json:"tokens_total"`
}

// NodeSnapshot is a node as the console shows it.
type NodeSnapshot struct {
	Name string `json:"name"`
	// Local is the built-in node whose hive runs beside the queen; other
	// nodes are reached over SSH.
	Local   bool   `json:"local"`
	SSHHost string `json:"ssh_host,omitempty"`
	// Reachable says whether its hive answered the queen just now;
	// Running is false for a local hive that simply is not started.
	Reachable bool `json:"reachable"`
	Running   bool `json:"running"`
	// Status and LastConnectedUnix are the registry's record (remote nodes).
	Status            NodeStatus `json:"status,omitempty"`
	LastConnectedUnix int64      `json:"last_connected_unix,omitempty"`
	// Info is what its hive said of the node, when it answered: asked for
	// every ten seconds, its free memory rounded down to 256 MiB, so that
	// the constant drift of free memory does not count as a change.
	Info *HiveInfo `json:"info,omitempty"`
	// Error says why its hive could not be asked, when it could not.
	Error *Error `json:"error,omitempty"`
}

// WorkerSnapshot is a worker with its recent speed.
type WorkerSnapshot struct {
	WorkerInfo
	// TokensPerSecond is what the queen relayed from it since the
	// previous snapshot of the stream.
	TokensPerSecond float64 `json:"tokens_per_second"`
}

// Task states of a TaskSnapshot.
const (
	TaskPreparing = "preparing" // reaching the hive, downloading, spawning, loading
	TaskQueued    = "queued"    // waiting for a free slot
	TaskRunning   = "running"   // its worker generates
)

// TaskSnapshot is one of the queen's tasks (POST /v2/tasks and the OpenAI
// and other routes built on them).
type TaskSnapshot struct {
	ID       string    `json:"id"`
	Node     string    `json:"node"`
	Model    string    `json:"model"`
	WorkerID string    `json:"worker_id,omitempty"`
	State    string    `json:"state"`
	Started  time.Time `json:"started"`
	// Tokens is how many tokens it generated so far.
	Tokens int64 `json:"tokens"`
	// FirstTokenMs is the time from its request to its first token; 0
	// before that.
	FirstTokenMs int64 `json:"first_token_ms,omitempty"`
	// Position is its place in its queue (1 next), while queued.
	Position int `json:"position,omitempty"`
}

// DownloadSnapshot is a model download the queen follows.
type DownloadSnapshot struct {
	ID              string    `json:"id"`
	Node            string    `json:"node"`
	ModelRef        string    `json:"model_ref"`
	Stage           string    `json:"stage"`
	BytesDownloaded int64     `json:"bytes_downloaded"`
	BytesTotal      int64     `json:"bytes_total"`
	SpeedMBps       float64   `json:"speed_mbps"`
	Started         time.Time `json:"started"`
}

// NodeModels is one node's model catalog in the queen's GET /v2/models.
type NodeModels struct {
	Node   string       `json:"node"`
	Models []ModelEntry `json:"models"`
	// Error says why the catalog is missing, when the hive did not answer.
	Error *Error `json:"error,omitempty"`
}

// ClusterModels is the body of the queen's GET /v2/models.
type ClusterModels struct {
	Nodes []NodeModels `json:"nodes"`
}

// PullRequest is the body of the queen's POST /v2/models/download: get an
// hf: model onto a node's catalog.
type PullRequest struct {
	Node     string `json:"node"`
	ModelRef string `json:"model_ref"`
}
