package rbee

import (
	"context"
	"iter"
	"net/http"

	"rbee/api"
)

// Logs streams a node's log lines: its hive's and its workers', each
// with the node, its source ([SourceHive] or a worker id) and its time (a
// line without a timestamp of its own continues the entry above it and has
// that entry's time). The last lines come first (lines of them, 0 to
// [MaxLogLines]; [DefaultLogLines] is what rbee logs shows), all files
// merged oldest first. Without follow the sequence then ends; with follow
// it goes on with every line written after, new workers' included, until
// ctx ends (yielding ctx.Err()) or the node's hive or the queen ends the
// stream.
//
// A refused request ([ErrNodeNotFound], [ErrConnectionTimeout] when the
// node's hive does not answer, [ErrInvalidRequest]), an error event or a
// stream that breaks off (an error wrapping [ErrStreamClosed]) is yielded
// once as the error, and then the sequence ends. Breaking out of the loop
// closes the stream.
func (c *Client) Logs(ctx context.Context, node string, follow bool, lines int) iter.Seq2[LogLine, error] {
	return func(yield func(LogLine, error) bool) {
		if e := api.ValidateNodeName(node); e != nil {
			yield(LogLine{}, e)
			return
		}
		if lines < 0 || lines > MaxLogLines {
			yield(LogLine{}, api.InvalidField("lines", "lines is a whole number from 0 to %d", MaxLogLines))
			return
		}
		q := api.LogQuery{Follow: follow, Lines: lines}.Values()
		q.Set("node", node)
		path := "/v2/logs?" + q.Encode()
		for ev, err := range c.stream(ctx, http.MethodGet, path, nil, false, nil) {
			if err != nil {
				yield(LogLine{}, err)
				return
			}
			if ev.Kind == KindLog && !yield(*ev.Log, nil) {
				return
			}
		}
	}
}
