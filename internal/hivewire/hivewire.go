// Package hivewire holds what only a queen and its hives say to each other:
// the public worker types of package api plus each worker's bearer token,
// which the queen needs to call the worker and must never pass on to a
// keeper. Keeping the token off the public types means no program that
// lists workers through the queen can receive it by accident.
package hivewire

import "rbee/api"

// Worker is one entry of a hive's GET /v1/workers/list: the public entry and
// the worker's bearer token.
type Worker struct {
	api.WorkerInfo
	// APIKey is the worker's bearer token.
	APIKey string `json:"api_key,omitempty"`
	// IdleTimeoutMs is the hive's idle timeout: the worker is stopped once
	// it has been idle this long (0: a hive that does not say).
	IdleTimeoutMs int64 `json:"idle_timeout_ms,omitempty"`
}

// WorkerList is the body of a hive's GET /v1/workers/list.
type WorkerList struct {
	Workers []Worker `json:"workers"`
}

// Spawned is a hive's answer to POST /v1/workers/spawn: the public answer
// and the new worker's bearer token.
type Spawned struct {
	api.SpawnResponse
	// APIKey is the worker's bearer token.
	APIKey string `json:"api_key,omitempty"`
}
