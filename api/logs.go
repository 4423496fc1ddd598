package api

import (
	"net/url"
	"strconv"
	"time"
)

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
	// Time is when the line was written: its leading timestamp, or for a
	// line without one (which continues the entry above it, such as a
	// stack trace) the time of the line it continues; zero (and left out
	// of the JSON) when neither is known.
	Time time.Time `json:"time,omitzero"`
}

// LogQuery is what a log stream is asked for: ?follow=true&lines=N.
type LogQuery struct {
	// Follow keeps the stream open for lines written later.
	Follow bool
	// Lines is how many of the last lines come first (0 to MaxLogLines).
	Lines int
}

// ParseLogQuery reads ?follow= (true or false, default false) and ?lines=
// (0 to MaxLogLines, default DefaultLogLines), naming the field that fails.
func ParseLogQuery(v url.Values) (LogQuery, *Error) {
	q := LogQuery{Lines: DefaultLogLines}
	if s := v.Get("follow"); s != "" {
		f, err := strconv.ParseBool(s)
		if err != nil {
			return q, InvalidField("follow", "follow is true or false")
		}
		q.Follow = f
	}
	if s := v.Get("lines"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > MaxLogLines {
			return q, InvalidField("lines", "lines is a whole number from 0 to %d", MaxLogLines)
		}
		q.Lines = n
	}
	return q, nil
}

// Values is the query string of q, for ParseLogQuery.
func (q LogQuery) Values() url.Values {
	return url.Values{"follow": {strconv.FormatBool(q.Follow)}, "lines": {strconv.Itoa(q.Lines)}}
}
