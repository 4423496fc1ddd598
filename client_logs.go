package rbee

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"strings"

	"rbee/api"
	"rbee/internal/sse"
)

// Logs streams a node's log lines (S62): its hive's and its workers', each
// with the node, its source ([SourceHive] or a worker id) and its time when
// the line has a timestamp. The last lines come first (lines of them, 0 to
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
		h := c.http()
		resp, err := h.Stream(ctx, http.MethodGet, path, nil, nil)
		if err != nil {
			var e *api.Error
			switch {
			case errors.As(err, &e):
			case ctx.Err() != nil:
				err = ctx.Err()
			default:
				err = fmt.Errorf("rbee: GET %s%s: %w", strings.TrimRight(h.BaseURL, "/"), path, err)
			}
			yield(LogLine{}, err)
			return
		}
		defer resp.Body.Close()
		for ev, err := range sse.Read(resp.Body) {
			if err != nil {
				if ctx.Err() != nil {
					err = ctx.Err()
				}
				yield(LogLine{}, err)
				return
			}
			switch ev.Kind {
			case KindError:
				yield(LogLine{}, ev.Error)
				return
			case KindLog:
				if !yield(*ev.Log, nil) {
					return
				}
			}
		}
	}
}
