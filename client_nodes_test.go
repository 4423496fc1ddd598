package rbee_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee"
	"rbee/api"
	"rbee/internal/httpx"
	"rbee/internal/sse"
)

// nodeStreamHandler answers with narration lines, then done, an error
// event, or a stream cut short.
func nodeStreamHandler(end string, lines ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := sse.NewWriter(w)
		for _, l := range lines {
			_ = s.Send(api.NarrationEvent(api.ActorQueen, "step", l))
		}
		switch end {
		case "done":
			_ = s.Send(rbee.Event{Kind: rbee.KindDone, Done: &rbee.Done{Done: true}})
			_ = s.Close()
		case "error":
			_ = s.Error(api.Errorf(api.CodeSSHAuthFailed, "SSH authentication as vince to vince@h:22 failed").WithHint("add the key"))
		}
	}
}

func TestAddNodeAndInstallNode(t *testing.T) {
	add := rbee.AddNodeRequest{Name: "workstation", SSHHost: "10.0.0.2", SSHUser: "vince", InstallPath: "/opt/rbee", Tunnel: true}
	cases := []struct {
		name    string
		handler http.HandlerFunc
		lines   int
		done    bool
		err     error
	}{
		{"done", nodeStreamHandler("done", "Testing SSH connection", "SSH connection works"), 2, true, nil},
		{"error event", nodeStreamHandler("error", "Testing SSH connection"), 1, false, rbee.ErrSSHAuthFailed},
		{"cut", nodeStreamHandler("cut", "Testing SSH connection"), 1, false, rbee.ErrStreamClosed},
		{"refused", func(w http.ResponseWriter, r *http.Request) {
			httpx.WriteError(w, r, api.Errorf(api.CodeNodeAlreadyExists, "node workstation is already registered"))
		}, 0, false, rbee.ErrNodeAlreadyExists},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, client := newFakeQueen(t, c.handler)
			for _, call := range []struct {
				path string
				seq  func(func(rbee.Event, error) bool)
				body any
			}{
				{"/v2/registry/beehives/add", client.AddNode(t.Context(), add), add},
				{"/v2/registry/beehives/install", client.InstallNode(t.Context(), rbee.InstallRequest{Name: "workstation"}), rbee.InstallRequest{Name: "workstation"}},
			} {
				evs, errs := collect(t, call.seq)
				var lines int
				var done bool
				for _, ev := range evs {
					switch ev.Kind {
					case rbee.KindNarration:
						lines++
					case rbee.KindDone:
						done = true
					}
				}
				assert.Equal(t, c.lines, lines, call.path)
				assert.Equal(t, c.done, done, call.path)
				if c.err == nil {
					assert.Empty(t, errs)
				} else {
					require.Len(t, errs, 1, "one error, then the end")
					assert.ErrorIs(t, errs[0], c.err)
				}
				got := f.last()
				assert.Equal(t, "POST "+call.path, got.Method+" "+got.Path)
				assert.Equal(t, "Bearer secret-token-0123456789", got.Auth)
				want, _ := json.Marshal(call.body)
				assert.JSONEq(t, string(want), got.Body)
			}
		})
	}
	var e *rbee.Error
	_, errs := collect(t, (&rbee.Client{BaseURL: "http://127.0.0.1:1"}).AddNode(t.Context(), add))
	require.Len(t, errs, 1)
	assert.False(t, errors.As(errs[0], &e), "an unreachable queen is not a queen's error")
	assert.Contains(t, errs[0].Error(), "POST http://127.0.0.1:1/v2/registry/beehives/add")
}
