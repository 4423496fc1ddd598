package sse

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
)

func TestRoundTrip(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := NewWriter(w)
		require.NoError(t, s.Send(api.NarrationEvent(api.ActorHive, "spawn", "Spawning worker\nsecond line")))
		require.NoError(t, s.Send(api.Event{Kind: api.KindProgress, Progress: &api.Progress{Stage: api.StageLoading, LayersLoaded: 3, LayersTotal: 23}}))
		require.NoError(t, s.Send(api.Event{Kind: api.KindToken, Token: &api.Token{Token: " upon", Index: 1}}))
		require.NoError(t, s.Send(api.Event{Kind: api.KindDone, Done: &api.Done{Done: true, TotalTokens: 2, StopReason: api.StopMaxTokens}}))
		require.NoError(t, s.Close())
		require.NoError(t, s.Close(), "closing twice is harmless")
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	var kinds []api.EventKind
	var events []api.Event
	for ev, err := range Read(resp.Body) {
		require.NoError(t, err)
		kinds = append(kinds, ev.Kind)
		events = append(events, ev)
	}
	assert.Equal(t, []api.EventKind{api.KindNarration, api.KindProgress, api.KindToken, api.KindDone}, kinds)
	assert.Equal(t, "Spawning worker\nsecond line", events[0].Narration.Human)
	assert.Equal(t, 23, events[1].Progress.LayersTotal)
	assert.Equal(t, " upon", events[2].Token.Token)
	assert.Equal(t, api.StopMaxTokens, events[3].Done.StopReason)
}

func TestTruncatedStream(t *testing.T) {
	body := "event: token\ndata: {\"token\":\"a\",\"index\":0}\n\n"
	var got []error
	n := 0
	for ev, err := range Read(strings.NewReader(body)) {
		if err != nil {
			got = append(got, err)
			continue
		}
		n++
		assert.Equal(t, "a", ev.Token.Token)
	}
	assert.Equal(t, 1, n)
	require.Len(t, got, 1)
	assert.ErrorIs(t, got[0], ErrStreamClosed)
}

func TestUnnamedEventsAreSelfDescribing(t *testing.T) {
	body := "data: {\"human\":\"hi\",\"actor\":\"x\",\"action\":\"y\"}\n\ndata: {\"error\":{\"code\":\"WORKER_CRASHED\",\"message\":\"boom\"}}\n\ndata: [DONE]\n\n"
	var evs []api.Event
	for ev, err := range Read(strings.NewReader(body)) {
		require.NoError(t, err)
		evs = append(evs, ev)
	}
	require.Len(t, evs, 2)
	assert.Equal(t, "hi", evs[0].Narration.Human)
	assert.ErrorIs(t, evs[1].Error, api.ErrWorkerCrashed)
}
