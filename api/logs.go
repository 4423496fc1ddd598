package api

import "time"

// KindLog is the event of a log stream (the hive's GET /v1/logs, the
// queen's GET /v2/logs): one line of a daemon's log.
const KindLog EventKind = "log"

// SourceHive is the Source of a hive's own log lines; a worker's lines carry
// its worker id.
const SourceHive = "hive"

// Log stream limits: GET /v1/logs and /v2/logs send the last DefaultLogLines
// lines unless ?lines= says otherwise (0 to MaxLogLines).
const (
	DefaultLogLines = 100
	MaxLogLines     = 10000
)

// LogLine is one line of a node's logs.
type LogLine struct {
	// Node is the node the line comes from; the queen sets it.
	Node string `json:"node,omitempty"`
	// Source is the daemon that wrote it: SourceHive or a worker id.
	Source string `json:"source"`
	// Line is the text, without its line break.
	Line string `json:"line"`
	// Time is when the line was written, when its leading timestamp could
	// be parsed; zero (and left out of the JSON) otherwise.
	Time time.Time `json:"time,omitzero"`
}
